"""Command-line options shared by the training commands (train, sweep, search, transfer): one definition each."""

from __future__ import annotations

from typing import Annotated

import typer

RuleArg = Annotated[str, typer.Argument(help="Bundled rule name (completedp, mup, ...) or a .scale path.")]
Width = Annotated[int, typer.Option(help="Model width n.")]
Depth = Annotated[int, typer.Option(help="Residual blocks L.")]
Duration = Annotated[str | None, typer.Option(help="Training tokens (axis D), e.g. 2M.")]
Steps = Annotated[int | None, typer.Option(help="Optimizer steps (instead of --duration).")]
SeqLen = Annotated[int, typer.Option(help="Sequence length.")]
HeadDim = Annotated[int, typer.Option(help="Attention head dimension.")]
QkNorm = Annotated[bool, typer.Option("--qk-norm", help="RMSNorm on queries and keys.")]
Params = Annotated[list[str] | None, typer.Option(help="Rule-file param NAME=VALUE (alpha=1/2).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
Corpus = Annotated[str | None, typer.Option(help="Text file or folder (default: the bundled Shakespeare corpus).")]
EvalEvery = Annotated[
    int | None,
    typer.Option(help="Evaluate every K steps (default: 10 per run; the final val loss is what is compared)."),
]
EvalBatches = Annotated[int | None, typer.Option(help="Validation batches of 16 sequences per evaluation (default 8).")]
Batch = Annotated[str, typer.Option(help="Tokens per step (axis B), e.g. 4096 or 2^12.")]
