"""The module-graph reader names the same matrix in an ambiguity whatever Python's hash seed: two matrices that
both feed two residual branches are checked in name order, so the message (and a user's fix) is reproducible."""

from __future__ import annotations

import os
import subprocess
import sys

# Two residual branches that both read the up projections a and b of the first (a hand-built op record: no torch).
PROBE = """
from scalec.runtime.plan.graph import _Op, analyse
A, B = "blocks.0.mlp.up_a.weight", "blocks.0.mlp.up_b.weight"
ops = [
    _Op("embedding", [], [(0, "wte.weight")], [1], lookup=True),
    _Op("linear", [(0, 1)], [(1, A)], [2]),
    _Op("linear", [(0, 1)], [(1, B)], [3]),
    _Op("gelu", [(0, 2)], [], [10]),
    _Op("mul", [(0, 10), (1, 3)], [], [4]),
    _Op("linear", [(0, 4)], [(1, "c.weight")], [5]),
    _Op("add", [(0, 1), (1, 5)], [], [6]),
    _Op("mul", [(0, 2), (1, 3)], [], [7]),
    _Op("linear", [(0, 7)], [(1, "d.weight")], [8]),
    _Op("add", [(0, 6), (1, 8)], [], [9]),
]
shapes = {"wte.weight": (256, 8), A: (16, 8), B: (16, 8), "c.weight": (8, 16), "d.weight": (8, 16)}
classes = {"wte.weight": "input", A: "hidden", B: "hidden", "c.weight": "hidden", "d.weight": "hidden"}
print(analyse(ops, shapes, classes).ambiguous)
"""


def test_an_ambiguity_names_the_same_matrix_under_every_hash_seed():
    said = {
        subprocess.run(
            [sys.executable, "-c", PROBE],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in range(6)  # unsorted, these six seeds name up_a three times and up_b three times
    }
    assert said == {"matrix 'blocks.0.mlp.up_a.weight' feeds two residual branches"}
