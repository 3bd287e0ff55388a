"""The bundled training loop: `train(TrainConfig) -> RunSummary`.

Rule -> plan -> GPT with the plan's multipliers -> plan init -> AdamW over the plan's param groups, an lr
schedule applied as a factor of each group's planned lr, grad clipping, bf16 autocast (+ optional
torch.compile) on CUDA and fp32 on CPU, fixed-batch evaluation, divergence detection, atomic checkpoints
with exact resumption, and DistributedDataParallel under torchrun (rank 0 writes the run dir).

The pieces live in their own files and meet here: `run_dir` (where results go, locked, read back validated),
`prefetch` (batches one step ahead), `gpt` (the model), `step` (one optimizer step; statistics stay on the
device), `checkpoint`, `metrics` (log, progress, throughput). The loop reads the device only at log steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from scalec.lazy_module import lazy_module
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.plan.schedule import scale_lrs
from scalec.runtime.trainer.byte_model import build_byte_model
from scalec.runtime.trainer.checkpoint import CHECKPOINT, Checkpoint, load_checkpoint, restore, save_checkpoint
from scalec.runtime.trainer.data import ByteData, resolve_corpus
from scalec.runtime.trainer.gpt import GPT, GPTConfig
from scalec.runtime.trainer.lr_schedule import lr_factor
from scalec.runtime.trainer.metrics import MetricsLog, Progress, Throughput, peak_flops
from scalec.runtime.trainer.prefetch import Prefetcher
from scalec.runtime.trainer.run_dir import RunDir
from scalec.runtime.trainer.run_inputs import (
    INPUT_FIELDS,
    INPUT_NAMES,
    RunInputsError,
    check_planned,
    loaded_rule_sha256,
    prepared_sha256,
)
from scalec.runtime.trainer.step import StepReading, StepStats, train_step
from scalec.runtime.trainer.train_config import RESUME_FREE, RunSummary, TrainConfig, TrainConfigError

# the compiler only when this run loads its rule itself (train(cfg) without rules=); a run given them stays free of it
parameterisation = lazy_module("scalec.compiler.parameterisation")

EVAL_SEQS = 16  # sequences per evaluation batch: the eval set depends on seq_len only, never on batch
OnStep = Callable[[int, "dict[str, Any] | None"], None]


@dataclass(frozen=True)
class Placement:
    """Where the run executes: device, rank and world size (torchrun's environment; 0 and 1 otherwise)."""

    device: torch.device
    rank: int
    world: int

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run dir."""
        return self.rank == 0

    def autocast(self) -> Any:
        """bf16 autocast on CUDA, nothing on CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext()


@dataclass(frozen=True)
class Cadence:
    """When the loop reads the device, evaluates and checkpoints (steps counted from 1, as logged)."""

    total: int
    first: int  # the first step this process runs
    log_every: int
    eval_every: int
    ckpt_every: int  # 0 = never

    def evaluates(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.total

    def checkpoints(self, step: int) -> bool:
        return bool(self.ckpt_every) and (step % self.ckpt_every == 0 or step == self.total)

    def logs(self, step: int) -> bool:
        """Log steps: the only steps that wait for the device (the first of a process ends its warm-up)."""
        return step == self.first or step % self.log_every == 0 or self.evaluates(step) or self.checkpoints(step)


def _placement(name: str) -> Placement:
    env = os.environ
    rank, local_rank, world = (int(env.get(k, d)) for k, d in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainConfigError("error: --device cuda but no CUDA device is available; pass --device cpu")
        return Placement(torch.device(name if ":" in name else f"cuda:{local_rank}"), rank, world)
    if name != "cpu":
        raise TrainConfigError(f"error: unknown --device {name!r}; use auto, cpu or cuda")
    return Placement(torch.device("cpu"), rank, world)


@dataclass(frozen=True)
class BatchSplit:
    """How a step's batch is split: sequences per rank, and per forward pass (micro-batch)."""

    local_seqs: int
    micro: int


@dataclass
class Trainee:
    """What the loop trains: the model, the callable that runs it (compiled and/or DDP-wrapped), the optimizer."""

    model: GPT | Any  # the bundled GPT, or your model as a byte_model.ByteLM
    forward: Any
    ddp: Any
    optimizer: torch.optim.Optimizer


def _split_batch(cfg: TrainConfig, world: int) -> BatchSplit:
    """Sequences per rank and per micro-batch, or a one-line refusal."""
    seqs = cfg.batch // cfg.seq_len
    if seqs % world:
        raise TrainConfigError(f"error: --batch {cfg.batch} is {seqs} sequences, not divisible by {world} ranks")
    local = seqs // world
    micro = min(cfg.micro_batch or local, local)
    if local % micro:
        raise TrainConfigError(f"error: --micro-batch {micro} does not divide the {local} sequences per rank")
    return BatchSplit(local, micro)


def _model_config(cfg: TrainConfig) -> GPTConfig:
    try:
        return GPTConfig(
            width=cfg.width,
            depth=cfg.depth,
            head_dim=cfg.head_dim,
            n_heads=cfg.n_heads,
            seq_len=cfg.seq_len,
            qk_norm=cfg.qk_norm,
            mlp_ratio=cfg.mlp_ratio,
        )
    except ValueError as exc:
        raise TrainConfigError(f"error: model shape: {exc}") from None


def _load_rules(cfg: TrainConfig, rules: Any) -> Any:
    if rules is None:
        rules = parameterisation.load(cfg.rule, params=dict(cfg.params) or None, base=dict(cfg.base) or None)
    return rules


def _with_inputs(cfg: TrainConfig, rules: Any, corpus_folder: Path) -> TrainConfig:
    """`cfg` with the hashes of the rule chain and corpus this run reads; a preset hash (a study's key) that the
    inputs no longer match is refused in one line."""
    actual = {
        "rule_sha256": loaded_rule_sha256(rules, cfg.params, cfg.base),
        "corpus_sha256": prepared_sha256(corpus_folder),
        "model_sha256": cfg.model_sha256,
    }
    check_planned(cfg.to_dict(), actual, {"rule_sha256": cfg.rule, "corpus_sha256": cfg.corpus or "(default)"})
    return dataclasses.replace(cfg, **actual)


def _make_plan(cfg: TrainConfig, rules: Any, gcfg: GPTConfig) -> Any:
    shape = {"n": cfg.width, "L": cfg.depth, "B": cfg.batch, "D": cfg.total_tokens(), "d_head": gcfg.head_dim}
    with torch.device("meta"):
        return make_plan(rules, GPT(gcfg), shape, hp=dict(cfg.hp) or None)


def build_optimizer(plan: Any, model: GPT, device: torch.device) -> torch.optim.Optimizer:
    """Each role's optimizer (AdamW, SGD, Muon) over the plan's groups: fused on CUDA; on CPU AdamW fused (torch
    has the kernel there too) and the others foreach. An all-AdamW plan gets torch's AdamW itself."""
    if device.type == "cuda":
        return plan.optimizer(model, fused=True)
    return plan.optimizer(model, foreach=True)  # AdamW: fused where supported (build_optimizer)


def _forward(model: GPT, at: Placement, compile_: bool) -> tuple[Any, Any]:
    """(callable the loop runs, DDP wrapper or None). Dynamo caches compiled code per shape and multiplier set,
    so a sweep's next run of the same shape reuses it; the recompile limit is raised so sweeps stay compiled."""
    ddp = None
    forward: Any = model
    if at.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = forward = DistributedDataParallel(
            model, device_ids=[at.device.index] if at.device.type == "cuda" else None
        )
    if compile_:
        import torch._dynamo.config as dynamo_config

        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dynamo_config, name):
                setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
        forward = torch.compile(forward)
    return forward, ddp


def _evaluate(forward: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], at: Placement) -> float:
    """Mean loss over the fixed held-out batches (already on the device, split across ranks)."""
    was_training = forward.training
    forward.eval()
    total = torch.zeros(2, dtype=torch.float64, device=at.device)
    with torch.no_grad():
        for x, y in batches[at.rank :: at.world]:
            with at.autocast():
                total[0] += forward(x, y).double()
            total[1] += 1
    if at.world > 1:
        dist.all_reduce(total)
    forward.train(was_training)
    return float(total[0] / total[1])


def _check_resumable(run_dir: RunDir, cfg: TrainConfig) -> None:
    """Refuse to resume a run dir whose config.json differs in anything that changes the result: a setting, or
    the content of an input (the rule chain, the corpus, the model file)."""
    if cfg.resume == "never":
        raise TrainConfigError(
            f"error: {run_dir.path} already holds a run; pass --resume auto to continue it or another --out"
        )
    old, new = run_dir.config(), json.loads(json.dumps(cfg.to_dict()))
    diff = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k))
    changed = [k for k in INPUT_FIELDS if k in diff]
    if changed:
        what = {"rule_sha256": cfg.rule, "corpus_sha256": cfg.corpus or "(default)", "model_sha256": "--model"}
        parts = [
            f"{INPUT_NAMES[k]} {what[k]} ({'not recorded' if old.get(k) is None else str(old[k])[:12]} then, "
            f"{str(new.get(k))[:12]} now)"
            for k in changed
        ]
        raise RunInputsError(
            f"error: {run_dir.path} was trained on other inputs: {'; '.join(parts)} changed since; resuming would "
            "mix the two, so pass another --out to start over (the run there is kept as it is)"
        )
    if diff:
        raise TrainConfigError(
            f"error: {run_dir.path} holds a run with different settings ({', '.join(diff)}); pass "
            "another --out or the same settings to resume it"
        )


def train(cfg: TrainConfig, rules: Any = None, on_step: OnStep | None = None) -> RunSummary:
    """Train the bundled GPT under `cfg.rule` (or the given Parameterisation/generated module `rules`).

    `on_step(step, record)` is called after every optimizer step; `record` is the logged metrics at log steps
    and None between them (tests use it to interrupt a run).
    """
    if cfg.objective is not None:
        raise TrainConfigError(
            "error: TrainConfig.objective is your own loop, which the bundled loop does not run; run it with "
            "scalec.runtime.studies.user_objective.run_objective (scalec train/sweep --objective)"
        )
    t_start = time.perf_counter()
    at = _placement(cfg.device)
    own_group = at.world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if at.device.type == "cuda" else "gloo")
    try:
        with _run_dir(cfg, at) as run_dir:
            return _train(cfg, rules, on_step, at, run_dir, t_start)
    finally:
        if own_group:
            dist.destroy_process_group()


@contextlib.contextmanager
def _run_dir(cfg: TrainConfig, at: Placement) -> Iterator[RunDir | None]:
    """The locked run dir on rank 0, a read-only view on the others, None when the run writes nothing."""
    if cfg.out_dir is None:
        yield None
    elif not at.main:
        yield RunDir(Path(cfg.out_dir))
    else:
        with RunDir.open(Path(cfg.out_dir)) as run_dir:
            yield run_dir


def _train(
    cfg: TrainConfig, rules: Any, on_step: OnStep | None, at: Placement, run_dir: RunDir | None, t_start: float
) -> RunSummary:
    if at.device.type == "cuda":
        torch.cuda.set_device(at.device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    total = cfg.total_steps()
    split = _split_batch(cfg, at.world)

    # Everything that can refuse to run does so before the run dir is written.
    if at.main:
        folder = resolve_corpus(cfg.corpus)
    if at.world > 1:
        dist.barrier()  # rank 0 fetches / prepares the corpus once; the others then find it prepared
    if not at.main:
        folder = resolve_corpus(cfg.corpus, fetch=False)
    rules = _load_rules(cfg, rules)
    cfg = _with_inputs(cfg, rules, folder)
    ckpt = None
    if run_dir is not None and run_dir.has_run():
        _check_resumable(run_dir, cfg)
        done = run_dir.summary(total)
        if done is not None:
            return done
        run_dir.require_writable()
        if (run_dir.path / CHECKPOINT).exists():
            ckpt = load_checkpoint(run_dir.path / CHECKPOINT, total)
    elif run_dir is not None and at.main:
        run_dir.require_writable()
    if cfg.model is None:
        gcfg = _model_config(cfg)
        plan = _make_plan(cfg, rules, gcfg)
    data = ByteData(folder, cfg.seq_len, cfg.seed)

    binding = None
    if cfg.model is None:
        model = GPT(gcfg, plan.multipliers).to(at.device)
        torch.manual_seed(cfg.seed)
        plan.init_(model, generator=torch.Generator(device=at.device).manual_seed(cfg.seed))
    else:  # your model: bound, planned, initialised and hooked on the CPU (byte_model)
        example = data.eval_batches(1, 2)[0].x
        model, plan, binding = build_byte_model(cfg, rules, example, at.device)
    optimizer = build_optimizer(plan, model if binding is None else model.model, at.device)
    if ckpt is not None:
        restore(ckpt, model, optimizer)
    compile_ = cfg.compile and at.device.type == "cuda"  # inductor on CPU costs more than it saves here
    trainee = Trainee(model, *_forward(model, at, compile_), optimizer)
    start = ckpt.step if ckpt is not None else 0
    # Opened before anything is written: a metrics.jsonl that cannot be resumed refuses here.
    log = MetricsLog(run_dir.path if run_dir and at.main else None, cfg.tensorboard and at.main, start or None)
    try:
        if at.main and run_dir is not None:
            run_dir.write_json("config.json", cfg.to_dict())
            if binding is None:
                run_dir.write_text("plan.json", plan.to_json() + "\n")
            else:  # what the plan bound, folded and hooked, also on its own
                run_dir.write_json("plan.json", {**plan.to_dict(), "binding": binding})
                run_dir.write_json("binding.json", binding)
        loop = _Loop(cfg, at, trainee, data, split, run_dir, ckpt, t_start)
    except BaseException:
        log.close()
        raise
    return loop.run(on_step, log)


class _Loop:
    """The training loop over one process's steps: device work every step, host work at log steps only."""

    def __init__(
        self,
        cfg: TrainConfig,
        at: Placement,
        trainee: Trainee,
        data: ByteData,
        split: BatchSplit,
        run_dir: RunDir | None,
        ckpt: Checkpoint | None,
        t_start: float,
    ) -> None:
        self.cfg, self.at, self.trainee, self.data, self.split = cfg, at, trainee, data, split
        self.run_dir = run_dir if at.main else None
        self.step = ckpt.step if ckpt is not None else 0
        self.extra: dict[str, Any] = dict(ckpt.extra) if ckpt else {"best_val": None, "last_val": None, "wall_s": 0.0}
        total = cfg.total_steps()
        eval_every = cfg.eval_every or max(1, total // 10)
        self.cadence = Cadence(
            total=total,
            first=self.step + 1,
            log_every=cfg.log_every or max(1, min(10, total // 20)),
            eval_every=eval_every,
            ckpt_every=eval_every if cfg.checkpoint_every is None else cfg.checkpoint_every,
        )
        self.eval_set = [(b.x.to(at.device), b.y.to(at.device)) for b in data.eval_batches(cfg.eval_batches, EVAL_SEQS)]
        self.flops_tok = trainee.model.flops_per_token()
        self.peak = cfg.peak_flops or peak_flops(at.device)
        self.status, self.train_loss, self.tok_s, self.mfu = "finished", None, 0.0, None
        self.t_start, self.base_wall = t_start, float(self.extra["wall_s"])

    def wall(self) -> float:
        """Seconds this run has taken, over all its processes."""
        return self.base_wall + time.perf_counter() - self.t_start

    def run(self, on_step: OnStep | None, log: MetricsLog) -> RunSummary:
        """Train from the current step to the end (or divergence); write and return the summary."""
        cfg, at, cadence = self.cfg, self.at, self.cadence
        title = f"{cfg.rule} n={cfg.width} L={cfg.depth} B={cfg.batch}"
        progress = Progress(cadence.total, self.step, cfg.progress and at.main, max(1, cadence.total // 20), title)
        t = self.trainee
        batches = Prefetcher(self.data, self.split.local_seqs, at.rank, at.device, self.step, cadence.total)
        params = list(t.model.parameters())
        stats = StepStats(at.device)
        try:
            if self.step == 0:
                self.extra["last_val"] = self.extra["best_val"] = _evaluate(t.forward, self.eval_set, at)
                log.log({"step": 0, "tokens": 0, "val_loss": self.extra["last_val"]})
            clock = Throughput(cfg.batch, self.step)
            while self.step < cadence.total:
                factor = lr_factor(self.step, cadence.total, cfg.warmup, cfg.decay, cfg.min_lr_factor)
                scale_lrs(t.optimizer, factor)
                x, y = batches.get(self.step)
                loss, norm = train_step(
                    t.forward, t.optimizer, params, x, y, self.split.micro, at.autocast, cfg.grad_clip, t.ddp
                )
                stats.update(loss, norm)
                self.step += 1
                record = None
                if cadence.logs(self.step):
                    record = self._log_step(stats.read(at.world), factor, clock, log, progress)
                    clock.resume()
                if self.status == "diverged":
                    break
                if on_step is not None:
                    on_step(self.step, record)
        finally:
            batches.close()
            progress.close()
            log.close()
        return self._finish()

    def _log_step(
        self, reading: StepReading, factor: float, clock: Throughput, log: MetricsLog, progress: Progress
    ) -> dict[str, Any]:
        """Host work of a log step: divergence, throughput, evaluation, the metrics record, a checkpoint."""
        cadence, step = self.cadence, self.step
        if not reading.healthy:
            self.status = "diverged"
            self.step = cadence.first - 1 + reading.finite_steps  # the steps that were finite
            record = {"step": self.step + 1, "train_loss": reading.loss, "diverged": True}
            log.log(record)
            return record
        self.train_loss = reading.loss
        self.tok_s = clock.at_log(step)
        self.mfu = self.flops_tok * self.tok_s / (self.peak * self.at.world) if self.peak else None
        record: dict[str, Any] = {
            "step": step,
            "tokens": step * self.cfg.batch,
            "train_loss": reading.loss,
            "lr_factor": factor,
            "tokens_per_s": self.tok_s,
        }
        if reading.grad_norm is not None:
            record["grad_norm"] = reading.grad_norm
        if self.mfu is not None:
            record["mfu"] = self.mfu
        val = None
        if cadence.evaluates(step):
            val = record["val_loss"] = self.extra["last_val"] = _evaluate(self.trainee.forward, self.eval_set, self.at)
            if not math.isfinite(val):
                self.status = "diverged"
            elif self.extra["best_val"] is None or val < self.extra["best_val"]:
                self.extra["best_val"] = val
        log.log(record)
        progress.update(step, reading.loss, self.tok_s, self.mfu, val)
        if self.status != "diverged" and cadence.checkpoints(step) and self.run_dir is not None:
            self.extra["wall_s"] = self.wall()
            t = self.trainee
            save_checkpoint(self.run_dir.path / CHECKPOINT, t.model, t.optimizer, step, dict(self.extra))
        return record

    def _finish(self) -> RunSummary:
        summary = RunSummary(
            status=self.status,
            final_val_loss=self.extra["last_val"] if self.status == "finished" else None,
            best_val_loss=self.extra["best_val"],
            steps=self.step,
            tokens=self.step * self.cfg.batch,
            tokens_per_s=self.tok_s,
            mfu=self.mfu,
            wall_s=self.wall(),
            final_train_loss=self.train_loss,
            params=self.trainee.model.num_params(),
            flops_per_token=self.flops_tok,
            device=str(self.at.device),
        )
        if self.run_dir is not None:
            self.run_dir.write_json("summary.json", summary.to_dict())
        return summary
