"""Command-line options shared by the commands: one definition each, numbers read by `scalec.parsing`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from scalec.parsing import ArgumentValueError, parse_int, parse_number

if TYPE_CHECKING:
    from scalec.runtime.studies.run_args import RunArgs


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


def run_args(
    rule: str,
    *,
    width: int,
    depth: int,
    batch: str | int,
    duration: str | int | None,
    steps: int | None,
    seq_len: int,
    head_dim: int,
    qk_norm: bool,
    params: dict[str, str],
    hp: dict[str, float],
    seed: int,
    device: str,
    corpus: str | None,
    eval_every: int | None,
    eval_batches: int | None,
) -> RunArgs:
    """The run settings of a sweep, search or transfer from the shared options; `--batch` and `--duration` (`2^12`,
    `2M`) are read here."""
    from scalec.runtime.studies.run_args import RunArgs

    return RunArgs(
        rule=rule,
        width=width,
        depth=depth,
        batch=parse_int(batch, "--batch"),
        duration=parse_int(duration, "--duration") if duration else None,
        steps=steps,
        seq_len=seq_len,
        head_dim=head_dim,
        qk_norm=qk_norm,
        params=params,
        hp=hp,
        seed=seed,
        device=device,
        corpus=corpus,
        eval_every=eval_every,
        eval_batches=eval_batches,
    )
