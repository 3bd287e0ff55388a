"""The bundled training loop: `train(TrainConfig) -> RunSummary`.

Rule -> plan -> GPT with the plan's multipliers -> plan init -> AdamW over the plan's param groups, an lr
schedule applied as a factor of each group's planned lr, grad clipping, bf16 autocast (+ optional
torch.compile) on CUDA and fp32 on CPU, fixed-batch evaluation, divergence detection, atomic checkpoints
with exact resumption, and DistributedDataParallel under torchrun (rank 0 writes the run dir).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from scalec.runtime.trainer.checkpoint import CHECKPOINT, load_checkpoint, restore, save_checkpoint
from scalec.runtime.trainer.data import ByteData, resolve_corpus
from scalec.runtime.trainer.gpt import GPT, GPTConfig
from scalec.runtime.trainer.lr_schedule import lr_factor
from scalec.runtime.trainer.metrics import MetricsLog, Progress, peak_flops, write_json_atomic
from scalec.runtime.trainer.train_config import RESUME_FREE, RunSummary, TrainConfig, TrainConfigError

EVAL_SEQS = 16  # sequences per evaluation batch: the eval set depends on seq_len only, never on batch
_COMPILED_CACHE = 4  # compiled models kept per process (keyed by shape, multipliers and device)
_compiled: OrderedDict[tuple, tuple[GPT, Any]] = OrderedDict()


def _world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env.get("WORLD_SIZE", "1"))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainConfigError("error: --device cuda but no CUDA device is available; pass --device cpu")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise TrainConfigError(f"error: unknown --device {name!r}; use auto, cpu or cuda")
    return torch.device("cpu")


def _load_rules(cfg: TrainConfig) -> Any:
    import scalec

    if not hasattr(scalec, "load"):
        raise TrainConfigError("error: this scalec build has no rule compiler (scalec.load); reinstall scalec")
    return scalec.load(cfg.rule, params=dict(cfg.params) or None, base=dict(cfg.base) or None)


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


def _build_model(
    gcfg: GPTConfig, multipliers: dict[str, float], device: torch.device, compile_: bool
) -> tuple[GPT, Any]:
    """(model, callable): the callable is the compiled model when asked, cached per shape within a process."""
    if not compile_:
        return GPT(gcfg, multipliers).to(device), None
    key = (gcfg, tuple(sorted(multipliers.items())), str(device))
    if key in _compiled:
        _compiled.move_to_end(key)
        return _compiled[key]
    import torch._dynamo.config as dynamo_config

    # Every new shape or multiplier set is a recompile of the same code; raise the limit so sweeps stay compiled.
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
    model = GPT(gcfg, multipliers).to(device)
    _compiled[key] = (model, torch.compile(model))
    while len(_compiled) > _COMPILED_CACHE:
        _compiled.popitem(last=False)
    return _compiled[key]


def _check_resumable(out: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a run dir whose config.json differs in anything that changes the result."""
    path = out / "config.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise TrainConfigError(f"error: {path} is unreadable; move the run dir away or pass another --out") from None
    new = json.loads(json.dumps(cfg.to_dict()))
    diff = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k))
    if diff:
        raise TrainConfigError(
            f"error: {out} holds a run with different settings ({', '.join(diff)}); pass "
            "another --out or the same settings to resume it"
        )


def _summary_if_done(out: Path) -> RunSummary | None:
    path = out / "summary.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return RunSummary(**data) if data.get("status") in ("finished", "diverged") else None
    except (OSError, json.JSONDecodeError, TypeError):
        return None


def _mean_across(value: torch.Tensor, world: int) -> float:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def _evaluate(model: Any, batches: list, device: torch.device, autocast: Any, rank: int, world: int) -> float:
    """Mean loss over the fixed held-out batches (split across ranks)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad():
        for b in batches[rank::world]:
            with autocast():
                loss = model(b.x.to(device, non_blocking=True), b.y.to(device, non_blocking=True))
            total[0] += loss.double()
            total[1] += 1
    if world > 1:
        dist.all_reduce(total)
    model.train(was_training)
    return float(total[0] / total[1])


def train_step(
    forward: Any,
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    batch: Any,
    micro: int,
    device: torch.device,
    autocast: Callable[[], Any],
    grad_clip: float | None,
    ddp: Any = None,
    world: int = 1,
) -> tuple[float, float | None]:
    """One optimizer step over `batch` in micro-batches of `micro` sequences: (mean loss, grad norm).

    Skips the update and returns grad norm None when the loss or the gradient is not finite.
    """
    accum = batch.x.shape[0] // micro
    loss_sum = None
    for i in range(accum):
        x = batch.x[i * micro : (i + 1) * micro].to(device, non_blocking=True)
        y = batch.y[i * micro : (i + 1) * micro].to(device, non_blocking=True)
        # DDP all-reduces gradients on the last micro-batch only.
        with contextlib.nullcontext() if ddp is None or i == accum - 1 else ddp.no_sync():
            with autocast():
                loss = forward(x, y)
                if accum > 1:
                    loss = loss / accum
            loss.backward()
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True) if grad_clip else None
    loss_value = _mean_across(loss_sum, world)
    norm_value = float(norm) if norm is not None else 0.0
    if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
        optimizer.zero_grad(set_to_none=True)
        return loss_value, None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_value, (norm_value if norm is not None else 0.0)


def train(
    cfg: TrainConfig, rules: Any = None, on_step: Callable[[int, dict[str, Any]], None] | None = None
) -> RunSummary:
    """Train the bundled GPT under `cfg.rule` (or the given Parameterisation/generated module `rules`).

    `on_step(step, record)` is called after every optimizer step (tests use it to interrupt a run).
    """
    t_start = time.perf_counter()
    rank, local_rank, world = _world()
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if cfg.device != "cpu" and torch.cuda.is_available() else "gloo")
    try:
        return _train(cfg, rules, on_step, rank, local_rank, world, t_start)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(
    cfg: TrainConfig,
    rules: Any,
    on_step: Callable[[int, dict[str, Any]], None] | None,
    rank: int,
    local_rank: int,
    world: int,
    t_start: float,
) -> RunSummary:
    from scalec.runtime.plan.planner import make_plan
    from scalec.runtime.plan.schedule import scale_lrs

    device = _device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    main = rank == 0
    total_steps, tokens_per_step = cfg.total_steps(), cfg.batch
    seqs = cfg.batch // cfg.seq_len
    if seqs % world:
        raise TrainConfigError(f"error: --batch {cfg.batch} is {seqs} sequences, not divisible by {world} ranks")
    local_seqs = seqs // world
    micro = min(cfg.micro_batch or local_seqs, local_seqs)
    if local_seqs % micro:
        raise TrainConfigError(f"error: --micro-batch {micro} does not divide the {local_seqs} sequences per rank")

    # Everything that can refuse to run does so before any file is touched.
    out = Path(cfg.out_dir) if cfg.out_dir else None
    state = None
    if out is not None and (out / "config.json").exists():
        if cfg.resume == "never":
            raise TrainConfigError(
                f"error: {out} already holds a run; pass --resume auto to continue it or another --out"
            )
        _check_resumable(out, cfg)
        done = _summary_if_done(out)
        if done is not None:
            return done
        if (out / CHECKPOINT).exists():
            state = load_checkpoint(out / CHECKPOINT)
    rules = rules if rules is not None else _load_rules(cfg)
    gcfg = _model_config(cfg)
    shape = {"n": cfg.width, "L": cfg.depth, "B": cfg.batch, "D": cfg.total_tokens(), "d_head": gcfg.head_dim}
    with torch.device("meta"):
        plan = make_plan(rules, GPT(gcfg), shape, hp=dict(cfg.hp) or None)
    if main:
        folder = resolve_corpus(cfg.corpus)
    if world > 1:
        dist.barrier()  # rank 0 fetches / prepares the corpus once; the others then find it prepared
    if not main:
        folder = resolve_corpus(cfg.corpus, fetch=False)
    data = ByteData(folder, cfg.seq_len, cfg.seed)
    eval_set = data.eval_batches(cfg.eval_batches, EVAL_SEQS)

    compile_ = cfg.compile and device.type == "cuda"  # inductor on CPU costs more than it saves here
    model, compiled = _build_model(gcfg, plan.multipliers, device, compile_ and world == 1)
    torch.manual_seed(cfg.seed)
    plan.init_(model, generator=torch.Generator(device=device).manual_seed(cfg.seed))
    fused = device.type == "cuda"
    # Each role's optimizer (AdamW, SGD, Muon) over the plan's groups; an all-AdamW plan gets torch's AdamW itself.
    optimizer = plan.optimizer(model, fused=fused, foreach=None if fused else True)
    step = 0
    extra: dict[str, Any] = {"best_val": None, "last_val": None, "wall_s": 0.0}
    if state is not None:
        step = restore(state, model, optimizer)
        extra.update(state["extra"])
        del state
    forward, ddp = compiled if compiled is not None else model, None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        forward = torch.compile(ddp) if compile_ else ddp
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    )

    eval_every = cfg.eval_every or max(1, total_steps // 10)
    ckpt_every = eval_every if cfg.checkpoint_every is None else cfg.checkpoint_every
    flops_tok = model.flops_per_token()
    peak = cfg.peak_flops or peak_flops(device)
    if main and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", cfg.to_dict())
        (out / ".plan.json.tmp").write_text(plan.to_json() + "\n")
        os.replace(out / ".plan.json.tmp", out / "plan.json")
    log = MetricsLog(out if main else None, cfg.tensorboard and main, keep_until_step=step if step else None)
    title = f"{cfg.rule} n={cfg.width} L={cfg.depth} B={cfg.batch}"
    progress = Progress(total_steps, step, cfg.progress and main, cfg.log_every or max(1, total_steps // 20), title)
    params = [p for p in model.parameters()]
    status, train_loss, timed_s, timed_tokens = "finished", None, 0.0, 0
    tok_s, mfu = 0.0, None

    def checkpoint() -> None:
        if main and out is not None and ckpt_every:
            extra["wall_s"] = base_wall + time.perf_counter() - t_start
            save_checkpoint(out / CHECKPOINT, model, optimizer, step, dict(extra))

    base_wall = float(extra["wall_s"])
    try:
        if step == 0:
            extra["last_val"] = extra["best_val"] = _evaluate(forward, eval_set, device, autocast, rank, world)
            log.log({"step": 0, "tokens": 0, "val_loss": extra["last_val"]})
        while step < total_steps:
            t0 = time.perf_counter()
            scale_lrs(optimizer, lr_factor(step, total_steps, cfg.warmup, cfg.decay, cfg.min_lr_factor))
            batch = data.train_batch(step, local_seqs, rank)
            train_loss, grad_norm = train_step(
                forward, optimizer, params, batch, micro, device, autocast, cfg.grad_clip, ddp, world
            )
            if grad_norm is None or not math.isfinite(train_loss):
                status = "diverged"
                log.log({"step": step + 1, "train_loss": train_loss, "diverged": True})
                break
            step += 1
            dt = time.perf_counter() - t0
            if step > 1 or total_steps == 1:  # the first step of a process pays for compilation and warm-up
                timed_s, timed_tokens = timed_s + dt, timed_tokens + tokens_per_step
            tok_s = timed_tokens / timed_s if timed_s else tokens_per_step / dt
            mfu = flops_tok * tok_s / (peak * world) if peak else None
            record = {
                "step": step,
                "tokens": step * tokens_per_step,
                "train_loss": train_loss,
                "lr_factor": lr_factor(step - 1, total_steps, cfg.warmup, cfg.decay, cfg.min_lr_factor),
                "tokens_per_s": tok_s,
            }
            if cfg.grad_clip:
                record["grad_norm"] = grad_norm
            if mfu is not None:
                record["mfu"] = mfu
            val = None
            if step % eval_every == 0 or step == total_steps:
                val = _evaluate(forward, eval_set, device, autocast, rank, world)
                record["val_loss"] = extra["last_val"] = val
                if not math.isfinite(val):
                    status = "diverged"
                elif extra["best_val"] is None or val < extra["best_val"]:
                    extra["best_val"] = val
            log.log(record)
            progress.update(step, train_loss, tok_s, mfu, val)
            if status == "diverged":
                break
            if ckpt_every and (step % ckpt_every == 0 or step == total_steps):
                checkpoint()
            if on_step is not None:
                on_step(step, record)
    finally:
        progress.close()
        log.close()

    final_val = extra["last_val"] if status == "finished" else None
    summary = RunSummary(
        status=status,
        final_val_loss=final_val,
        best_val_loss=extra["best_val"],
        steps=step,
        tokens=step * tokens_per_step,
        tokens_per_s=tok_s,
        mfu=mfu,
        wall_s=base_wall + time.perf_counter() - t_start,
        final_train_loss=train_loss,
        params=model.num_params(),
        flops_per_token=flops_tok,
        device=str(device),
    )
    if main and out is not None:
        write_json_atomic(out / "summary.json", summary.to_dict())
    return summary
