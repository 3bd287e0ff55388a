"""`scalec train RULE ...`: train the bundled GPT, or your model, under a rule's plan (data-parallel under torchrun)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import Depth, Device, Model, Objective, QkNorm, Roles, RuleArg, real, whole
from scalec.compiler.parameterisation import load
from scalec.lazy_module import lazy_module
from scalec.parsing import parse_base, parse_hp_specs, parse_hp_values, parse_int, parse_params
from scalec.runtime.studies.user_model import model_settings
from scalec.runtime.studies.user_objective import run_objective
from scalec.runtime.trainer.train_config import RESUME_FREE, TrainConfig

# Modules that import torch load when the command runs, not for `--help` (which needs only the options).
trainer = lazy_module("scalec.runtime.trainer.train")

# What a run of your objective reads (the bundled loop's own settings do not reach it).
RUN_KEYS = ("rule", "width", "depth", "batch", "duration", "steps", "hp", "params", "base", "head_dim", "seed")
RUN_KEYS += ("device", "model", "roles", "model_sha256", "objective", "objective_sha256")


def _finished_objective(out: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of the same objective run already finished in `out` (then it is not run again), else None."""
    try:
        same = json.loads((out / "config.json").read_text()) == json.loads(json.dumps(config))
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if same and summary.get("status") in ("finished", "diverged") else None


def default_out(cfg: Any) -> str:
    """runs/<rule>_n<width>_L<depth>_<hash of the result-changing settings>: same settings, same folder."""
    keyed = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_FREE}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:8]
    rule = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(cfg.rule).removesuffix(".scale"))
    return os.path.join("runs", f"{rule}_n{cfg.width}_L{cfg.depth}_{digest}")


def register(app: typer.Typer) -> None:
    """Add `train` to the CLI."""

    @app.command("train")
    @guarded
    def train_cmd(
        rule: RuleArg,
        width: Annotated[int, typer.Option(parser=whole(), help="Model width n (d_model).")] = 256,
        depth: Depth = 4,
        batch: Annotated[str, typer.Option(help="Tokens per optimizer step (axis B), e.g. 8192 or 2^13.")] = "8192",
        duration: Annotated[
            str | None, typer.Option(help="Training tokens (axis D), e.g. 20M; steps = duration / batch.")
        ] = None,
        steps: Annotated[
            int | None, typer.Option(parser=whole(), help="Optimizer steps (then duration = steps * batch).")
        ] = None,
        seq_len: Annotated[int, typer.Option(parser=whole(), help="Sequence length T.")] = 256,
        head_dim: Annotated[
            int | None,
            typer.Option(
                parser=whole(),
                help="Attention head dimension (heads = width / head_dim); default 32, or --model's own.",
            ),
        ] = None,
        qk_norm: QkNorm = False,
        hp: Annotated[
            list[str] | None, typer.Option(help="HP override NAME=VALUE, e.g. eta=2^-7, lr\\[mlp.down]=2 (repeatable).")
        ] = None,
        param: Annotated[list[str] | None, typer.Option(help="Rule-file param NAME=VALUE, e.g. alpha=1/2.")] = None,
        base: Annotated[
            list[str] | None,
            typer.Option(help="Base-shape override AXIS=VALUE, e.g. n=256 (the proxy the HPs were tuned at)."),
        ] = None,
        seed: Annotated[int, typer.Option(parser=whole(0), help="Seed of init and data order.")] = 0,
        device: Device = "auto",
        compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model (CUDA only).")] = False,
        micro_batch: Annotated[
            int | None, typer.Option(parser=whole(), help="Sequences per forward pass (gradient accumulation).")
        ] = None,
        warmup: Annotated[
            float, typer.Option(parser=real(), help="Warmup: fraction of steps (<1) or a step count.")
        ] = 0.05,
        decay: Annotated[str, typer.Option(help="cosine | linear | constant.")] = "cosine",
        eval_every: Annotated[
            int | None, typer.Option(parser=whole(), help="Evaluate every K steps (default: 10 per run).")
        ] = None,
        out: Annotated[str | None, typer.Option(help="Run dir (default: runs/<rule>_n<w>_L<d>_<hash>).")] = None,
        resume: Annotated[
            str, typer.Option(help="auto: continue a run found in --out; never: refuse an existing run dir.")
        ] = "auto",
        corpus: Annotated[
            str | None, typer.Option(help="Text file or folder (default: Shakespeare, fetched on first use).")
        ] = None,
        tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Also log to <out>/tb.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
        model: Model = None,
        roles: Roles = None,
        objective: Objective = None,
    ) -> None:
        """Train the bundled GPT (bytes, Llama-style), or --model FILE.py:FUNC, with the rule's init, per-parameter
        optimizer settings and forward multipliers; writes config.json, plan.json (with --model also binding.json:
        roles, folds, hooks), metrics.jsonl, summary.json and a checkpoint."""
        hp_specs, params, bases = parse_hp_specs(hp), parse_params(param), parse_base(base)
        tokens = parse_int(batch, "--batch"), parse_int(duration, "--duration") if duration is not None else None
        rules = load(rule, params=params or None, base=bases or None)
        cfg = TrainConfig(
            **model_settings(model, roles, objective),
            rule=rule,
            width=width,
            depth=depth,
            batch=tokens[0],
            duration=tokens[1],
            steps=steps,
            hp=parse_hp_values(hp_specs, rules, "train"),
            params=params,
            base=bases,
            seq_len=seq_len,
            head_dim=head_dim if head_dim is not None or model is not None else 32,
            qk_norm=qk_norm,
            seed=seed,
            device=device,
            compile=compile_,
            micro_batch=micro_batch,
            warmup=warmup,
            decay=decay,
            eval_every=eval_every,
            resume=resume,
            corpus=corpus,
            tensorboard=tensorboard,
            progress=not quiet,
        )
        head = {"d_head": cfg.head_dim} if cfg.head_dim is not None else {}  # None: --model's own, read later
        rules.shape(n=width, L=depth, B=cfg.batch, D=cfg.total_tokens(), **head)  # before any work
        cfg.out_dir = out or default_out(cfg)
        if objective is not None:  # your loop: one run, as a sweep's, into the run dir
            config = {k: v for k, v in cfg.to_dict().items() if k in RUN_KEYS}
            done = _finished_objective(Path(cfg.out_dir), config) or run_objective(config, Path(cfg.out_dir))
            loss = "n/a" if done["final_val_loss"] is None else f"{done['final_val_loss']:.4f}"
            console.print(
                f"{done['status']}: objective {loss} after {done['steps']} steps | {done['wall_s']:.1f}s | "
                f"{cfg.out_dir}",
                markup=False,
            )
            if done["status"] == "diverged":
                raise typer.Exit(2)
            return
        summary = trainer.train(cfg, rules=rules)
        if int(os.environ.get("RANK", "0")) != 0:
            return
        mfu = f"{100 * summary.mfu:.1f}%" if summary.mfu is not None else "n/a"
        val = f"{summary.final_val_loss:.4f}" if summary.final_val_loss is not None else "n/a"
        best = f"{summary.best_val_loss:.4f}" if summary.best_val_loss is not None else "n/a"
        console.print(
            f"{summary.status}: val loss {val} (best {best}) after {summary.steps} steps / "
            f"{summary.tokens:,} tokens | {summary.tokens_per_s:,.0f} tok/s | MFU {mfu} | "
            f"{summary.wall_s:.1f}s | {cfg.out_dir}",
            markup=False,
        )
        if summary.status == "diverged":
            raise typer.Exit(2)
