"""The trainer's typed configuration and run summary (plain data; `config.json` / `summary.json` in a run dir)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.trainer.lr_schedule import DECAYS


class TrainConfigError(ScalecError):
    """A training configuration that cannot run (bad shape, batch split, schedule or device)."""


@dataclass
class TrainConfig:
    """One training run. `batch` and `duration` are tokens (the rule's B and D axes); steps = duration // batch
    unless `steps` is given (then duration = steps * batch). `hp`: HP overrides by name (`eta`, `lr[mlp.down]`);
    `params`: rule-file params (`alpha`); `base`: base-shape overrides by axis (`{"n": 256}`), as scalec.load."""

    rule: str = "completedp"
    width: int = 256
    depth: int = 4
    batch: int = 8192
    duration: int | None = None
    steps: int | None = None
    hp: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    base: dict[str, float] = field(default_factory=dict)
    seq_len: int = 256
    head_dim: int | None = 32  # None: a --model's own (config.head_dim / head_dim attribute)
    n_heads: int | None = None
    qk_norm: bool = False
    mlp_ratio: float = 3.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False
    micro_batch: int | None = None  # sequences per forward pass (gradient accumulation); None = whole batch
    warmup: float = 0.05  # fraction of steps (< 1) or a step count
    decay: str = "cosine"  # cosine | linear | constant
    min_lr_factor: float = 0.1
    grad_clip: float | None = 1.0
    eval_every: int | None = None  # steps; None = about 10 evaluations per run
    eval_batches: int = 8
    checkpoint_every: int | None = None  # steps; None = at every evaluation; 0 = never
    log_every: int | None = None  # plain-text progress lines; None = about 20 per run
    out_dir: str | None = None  # None: write nothing (no run dir, no checkpoints)
    resume: str = "auto"  # auto | never
    corpus: str | None = None  # None = default corpus (fetched on first use)
    tensorboard: bool = False
    progress: bool = True
    peak_flops: float | None = None  # per device, for MFU; None = detect known GPUs
    model: str | None = None  # your model FILE.py:FUNC, FUNC(width, depth) -> nn.Module (byte ids -> logits)
    roles: dict[str, str] = field(default_factory=dict)  # {glob: role} for --model (default: a preset, else inferred)
    objective: str | None = None  # your training function FILE.py:FUNC(model, optimizer, run) -> final loss
    objective_sha256: str | None = None  # content hash of the --objective file
    # What the run reads beyond these settings, as content hashes (run_inputs.py): the trainer fills them in,
    # records them in config.json and refuses a resume whose inputs changed; a study presets them (its store key).
    rule_sha256: str | None = None  # the rule's `extends` chain with the params and base overrides
    corpus_sha256: str | None = None  # the prepared corpus's bytes
    model_sha256: str | None = None  # a user model file (--model FILE.py:FUNC); None for the bundled GPT

    def __post_init__(self) -> None:
        if isinstance(self.resume, bool):
            self.resume = "auto" if self.resume else "never"
        if self.head_dim is None and self.model is None:
            raise TrainConfigError("error: --head-dim is needed for the bundled GPT")
        for name in ("width", "depth", "batch", "seq_len", "head_dim", "eval_batches"):
            if getattr(self, name) is not None and int(getattr(self, name)) <= 0:
                raise TrainConfigError(f"error: --{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.resume not in ("auto", "never"):
            raise TrainConfigError(f"error: --resume must be auto or never, got {self.resume!r}")
        if self.decay not in DECAYS:
            raise TrainConfigError(f"error: unknown lr decay {self.decay!r}; use one of {', '.join(DECAYS)}")
        if self.duration is None and self.steps is None:
            raise TrainConfigError("error: give the training length: --duration TOKENS or --steps N")
        if self.steps is not None and int(self.steps) < 1:
            raise TrainConfigError(f"error: --steps must be positive, got {self.steps}")
        if self.batch % self.seq_len:
            raise TrainConfigError(
                f"error: --batch {self.batch} tokens is not a multiple of --seq-len "
                f"{self.seq_len}; batch counts tokens per step"
            )
        if self.objective is not None and self.model is None:
            raise TrainConfigError("error: --objective trains a --model FILE.py:FUNC; pass --model too")
        if self.roles and self.model is None:
            raise TrainConfigError("error: --roles binds the parameters of --model FILE.py:FUNC; pass --model too")
        if self.model is None and self.width % (self.width // self.n_heads if self.n_heads else self.head_dim):
            raise TrainConfigError(f"error: --width {self.width} is not a multiple of --head-dim {self.head_dim}")
        if self.total_steps() < 1:
            raise TrainConfigError(
                f"error: --duration {self.duration} is shorter than one batch ({self.batch} "
                "tokens); raise --duration or lower --batch"
            )

    def total_steps(self) -> int:
        """Optimizer steps of the run."""
        return int(self.steps) if self.steps is not None else int(self.duration) // int(self.batch)

    def total_tokens(self) -> int:
        """The D axis: tokens the run trains on."""
        return int(self.duration) if self.steps is None else self.total_steps() * int(self.batch)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (config.json); the OPTIONAL_KEYS left out while unset, so the configs (and run-dir names) of
        runs made before those settings existed stay the same."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if not (k in OPTIONAL_KEYS and v in (None, {}))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainConfigError(f"error: unknown training setting(s) {unknown}; known: {sorted(names)}")
        return cls(**data)


# Settings added after run dirs existed: written only when set (to_dict).
OPTIONAL_KEYS = ("model", "roles", "model_sha256", "objective", "objective_sha256", "rule_sha256", "corpus_sha256")

# Settings that may differ between an interrupted run and its resumption without changing the result.
RESUME_FREE = (
    "out_dir",
    "resume",
    "progress",
    "log_every",
    "tensorboard",
    "device",
    "compile",
    "peak_flops",
    "checkpoint_every",
    "corpus",
)


@dataclass
class RunSummary:
    """Outcome of a run (`summary.json`)."""

    status: str  # "finished" | "diverged" | "running"
    final_val_loss: float | None
    best_val_loss: float | None
    steps: int
    tokens: int
    tokens_per_s: float
    mfu: float | None
    wall_s: float
    final_train_loss: float | None = None
    params: int = 0
    flops_per_token: float = 0.0
    device: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dataclasses.asdict(self)
