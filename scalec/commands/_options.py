"""Command-line options shared by the commands: one definition each, numbers read by `scalec.parsing`; the run
settings sweep, search and transfer share are one object, StudyOptions (`study_options` adds them to a command)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.parsing import ArgumentValueError, parse_int, parse_number, parse_params
from scalec.runtime.studies.run_args import RunArgs
from scalec.runtime.studies.user_model import model_settings


def whole(minimum: int | None = 1) -> Callable[[str | int], int]:
    """A typer parser for whole-number options (`64`, `2^6`, `16M`), refusing values below `minimum`."""

    def parse(text: str | int) -> int:
        try:
            return parse_int(text, "", minimum=minimum)
        except ArgumentValueError as exc:
            raise typer.BadParameter(str(exc).removeprefix("error: ")) from None

    return parse


def real(positive: bool = False) -> Callable[[str | float], float]:
    """A typer parser for number options (`2^-6`, `1e-3`, `0.05`)."""

    def parse(text: str | float) -> float:
        try:
            return parse_number(text, "", positive=positive)
        except ArgumentValueError as exc:
            raise typer.BadParameter(str(exc).removeprefix("error: ")) from None

    return parse


RuleArg = Annotated[str, typer.Argument(help="Bundled rule name (completedp, mup, ...) or a .scale path.")]
Width = Annotated[int, typer.Option(parser=whole(), help="Model width n.")]
Depth = Annotated[int, typer.Option(parser=whole(), help="Residual blocks L.")]
Duration = Annotated[str | None, typer.Option(help="Training tokens (axis D), e.g. 2M.")]
Steps = Annotated[int | None, typer.Option(parser=whole(), help="Optimizer steps (instead of --duration).")]
SeqLen = Annotated[int, typer.Option(parser=whole(), help="Sequence length.")]
HeadDim = Annotated[int, typer.Option(parser=whole(), help="Attention head dimension.")]
QkNorm = Annotated[bool, typer.Option("--qk-norm", help="RMSNorm on queries and keys.")]
Params = Annotated[list[str] | None, typer.Option(help="Rule-file param NAME=VALUE (alpha=1/2).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
Corpus = Annotated[str | None, typer.Option(help="Text file or folder (default: the bundled Shakespeare corpus).")]
EvalEvery = Annotated[
    int | None,
    typer.Option(parser=whole(), help="Evaluate every K steps (default: 10 per run; the final val loss is compared)."),
]
EvalBatches = Annotated[
    int | None, typer.Option(parser=whole(), help="Validation batches of 16 sequences per evaluation (default 8).")
]
Batch = Annotated[str, typer.Option(help="Tokens per step (axis B), e.g. 4096 or 2^12.")]


Model = Annotated[
    str | None,
    typer.Option(help="Your model: FILE.py:FUNC, FUNC(width, depth) -> nn.Module (byte ids -> logits)."),
]
Roles = Annotated[
    Path | None, typer.Option(help="JSON {glob: role} binding --model's parameters (default: a preset, else inferred).")
]
Objective = Annotated[
    str | None,
    typer.Option(help="Your training function FILE.py:FUNC(model, optimizer, run) -> final loss (needs --model)."),
]

Workers = Annotated[
    int, typer.Option(parser=whole(), help="Worker processes on this machine sharing the runs (as search's).")
]
Storage = Annotated[
    str | None,
    typer.Option(
        help="Share the runs through an Optuna storage: a journal file (default <out>/study.journal when --workers "
        "> 1) or an RDB URL (postgresql://user@host/db); workers elsewhere join with python -m "
        "scalec.runtime.studies.grid_study <out>/grid_settings.json."
    ),
]
StudyName = Annotated[str | None, typer.Option(help="Study name in --storage (default: derived from the runs).")]


ModelHeadDim = Annotated[
    int | None, typer.Option(parser=whole(), help="Attention head dimension (default 32, or --model's own).")
]
FirstSeed = Annotated[int, typer.Option(help="First seed.")]


@dataclass(frozen=True)
class StudyOptions:
    """The run settings sweep, search and transfer share, declared once: each field is a CLI option (its annotation
    and default; `study_options` adds them to a command), and the command receives them as this one object."""

    width: Width = 128
    depth: Depth = 2
    batch: Batch = "4096"
    duration: Duration = None
    steps: Steps = None
    seq_len: SeqLen = 128
    head_dim: ModelHeadDim = None
    qk_norm: QkNorm = False
    param: Params = None
    seed: FirstSeed = 0
    device: Device = "auto"
    corpus: Corpus = None
    eval_every: EvalEvery = None
    eval_batches: EvalBatches = None
    model: Model = None
    roles: Roles = None
    objective: Objective = None

    def params(self) -> dict[str, str]:
        """The rule-file params (--param NAME=VALUE)."""
        return parse_params(self.param)

    def run_args(self, rule: str, hp: dict[str, float], **changes: Any) -> RunArgs:
        """The study's RunArgs; `--batch` and `--duration` (`2^12`, `2M`) are read here, --model is loaded (hash,
        roles) and `changes` override settings (a transfer's base shape)."""
        settings = {
            "rule": rule,
            "width": self.width,
            "depth": self.depth,
            "batch": parse_int(self.batch, "--batch"),
            "duration": parse_int(self.duration, "--duration") if self.duration else None,
            "steps": self.steps,
            "seq_len": self.seq_len,
            "head_dim": self.head_dim if self.head_dim is not None or self.model else 32,
            "qk_norm": self.qk_norm,
            "params": self.params(),
            "hp": hp,
            "seed": self.seed,
            "device": self.device,
            "corpus": self.corpus,
            "eval_every": self.eval_every,
            "eval_batches": self.eval_batches,
            **model_settings(self.model, self.roles, self.objective),
        }
        return RunArgs(**{**settings, **changes})


def _study_options() -> dict[str, tuple[Any, Any]]:
    hints = typing.get_type_hints(StudyOptions, include_extras=True)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(StudyOptions)}


# name -> (annotation, default) of each shared option, read off StudyOptions.
STUDY_OPTIONS: dict[str, tuple[Any, Any]] = _study_options()


def study_options(**overrides: Any) -> Callable[[Callable], Callable]:
    """Decorate a command `fn(..., options: StudyOptions)`: the CLI gets every STUDY_OPTIONS option after the
    command's own, and `fn` receives them as one StudyOptions. `overrides`: name -> default, or name ->
    (annotation, default)."""

    def decorate(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "options"]
        extra = []
        for name, (annotation, default) in STUDY_OPTIONS.items():
            change = overrides.get(name, default)
            annotation, default = change if isinstance(change, tuple) else (annotation, change)
            kind = inspect.Parameter.KEYWORD_ONLY
            extra.append(inspect.Parameter(name, kind, default=default, annotation=annotation))

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            shared = {name: kwargs.pop(name) for name in STUDY_OPTIONS}
            return fn(*args, options=StudyOptions(**shared), **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
