"""The run settings every run of a sweep, search or transfer study shares, as one typed object (instead of a
16-argument function); `config()` is the plain run config the RunStore keys and the trainer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scalec.errors import ScalecError


class RunArgsError(ScalecError):
    """Run settings that cannot make a training run."""


@dataclass(frozen=True)
class RunArgs:
    """Model shape, training length, data and device of a study's runs (TrainConfig field names)."""

    rule: str
    width: int
    depth: int
    batch: int
    duration: int | None = None
    steps: int | None = None
    seq_len: int = 128
    head_dim: int = 32
    qk_norm: bool = False
    params: dict[str, str] = field(default_factory=dict)
    hp: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    corpus: str | None = None
    eval_every: int | None = None
    eval_batches: int | None = None
    model_sha256: str | None = None  # run_inputs.file_sha256 of a --model file: part of every run's store key

    def config(self) -> dict[str, Any]:
        """The run config (defaults left out, so configs stay short and their keys stable); validated by
        TrainConfig before anything runs."""
        from scalec.runtime.trainer.train_config import TrainConfig

        if self.duration is None and self.steps is None:
            raise RunArgsError("error: give the training length: --duration TOKENS or --steps N")
        config: dict[str, Any] = {
            "rule": self.rule,
            "width": self.width,
            "depth": self.depth,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "head_dim": self.head_dim,
            "hp": dict(self.hp),
            "seed": self.seed,
        }
        if self.duration is not None:
            config["duration"] = self.duration
        else:
            config["steps"] = self.steps
        optional = {
            "qk_norm": self.qk_norm or None,
            "params": dict(self.params) or None,
            "device": None if self.device == "auto" else self.device,
            "corpus": self.corpus,
            "eval_every": self.eval_every,
            "eval_batches": self.eval_batches,
            "model_sha256": self.model_sha256,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        TrainConfig(**config)  # validates batch/seq_len/head_dim/length
        return config
