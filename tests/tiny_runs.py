"""What the training tests share: a tiny rule whose batch and duration ranges admit runs of a few steps, and a
small synthetic corpus (words drawn with a fixed seed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

WORDS = ("to", "be", "or", "not", "that", "is")


def tiny_rule(parent: str = "muP") -> str:
    """A rule file `Tiny<Parent>` extending `parent` (a bundled rule's name) with B and D ranges wide enough for
    tiny runs."""
    return (
        f"parameterisation Tiny{parent[0].upper()}{parent[1:]} extends {parent}\n"
        f'  "{parent} with batch and duration ranges wide enough for tiny test runs."\n'
        "  axis B = 2^12 in [2^6, 2^24]\n"
        "  axis D = 2^22 in [2^8, 2^44]\n"
    )


RULE = tiny_rule()


def write_tiny_rule(directory: Path, parent: str = "muP") -> Path:
    """`directory/tiny.scale`, the tiny rule over `parent`."""
    path = Path(directory) / "tiny.scale"
    path.write_text(tiny_rule(parent))
    return path


def write_corpus(directory: Path, words: Sequence[str] = WORDS, size: int = 12_000, seed: int = 0) -> Path:
    """`directory/corpus.txt`: `size` words drawn from `words`; sets torch to one thread (tiny models run fastest
    on one)."""
    rng = np.random.default_rng(seed)
    path = Path(directory) / "corpus.txt"
    path.write_bytes(" ".join(rng.choice(list(words), size=size)).encode())
    torch.set_num_threads(1)
    return path
