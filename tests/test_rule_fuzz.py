"""Mutated bundled rule files: every one is accepted or refused with one located error, quickly, never a traceback."""

from __future__ import annotations

import random
import re
import time

import pytest

from scalec.compiler.analysis import desiderata
from scalec.compiler.codegen import generate
from scalec.compiler.loader import bundled_rules
from scalec.compiler.parameterisation import compile_ir, import_source
from scalec.errors import ScalecError

TOKENS = re.compile(r"\s+|\w+|.", re.DOTALL)
HUGE = ["9^9^9", "1e999999999", "10^400", "9" * 5000, "2^(2^100)", "m_N^(2^40)", "0.0000001^-99", "(1/0)"]
DEEP = ["(" * 300, ")" * 300, " + ".join(["m_N"] * 300), "sqrt(" * 150 + "m_N" + ")" * 150, '"\\"""', "\u2028", "\x00"]
SECONDS = 30  # generous for a shared CI machine; an idle one takes well under 5 s per case (README "Limits")


def _mutate(text: str, rng: random.Random) -> str:
    tokens = TOKENS.findall(text)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(tokens))
        op = rng.choice(("delete", "duplicate", "swap", "huge", "deep", "number"))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i] * rng.choice((1, 2, 50)))
        elif op == "swap" and i + 1 < len(tokens):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        elif op == "huge":
            tokens.insert(i, rng.choice(HUGE))
        elif op == "deep":
            tokens.insert(i, rng.choice(DEEP))
        else:
            numbers = [j for j, t in enumerate(tokens) if t.isdigit()]
            if numbers:
                tokens[rng.choice(numbers)] = rng.choice(HUGE)
    return "".join(tokens)


RULES = sorted(bundled_rules())
# One mutant per bundled file in a quick run (`-m "not slow"`); all 100 in the full suite.
CASES = [
    pytest.param(RULES[seed % len(RULES)], seed, marks=() if seed < len(RULES) else pytest.mark.slow)
    for seed in range(100)
]


@pytest.mark.parametrize("name,seed", CASES)
def test_mutated_rule_file_is_accepted_or_refused_in_one_located_line(name, seed, tmp_path):
    rules = bundled_rules()
    for path in rules.values():  # parents beside the mutant, so `extends` finds them
        (tmp_path / path.name).write_text(path.read_text())
    mutant = tmp_path / f"{name}.scale"
    mutant.write_text(_mutate(rules[name].read_text(), random.Random(seed)))
    start = time.monotonic()
    try:
        ir, _ = compile_ir(mutant)
        desiderata(ir)
        import_source(generate(ir), ir.name)
    except ScalecError as exc:
        headline = str(exc).splitlines()[0]
        assert re.match(r".+:\d+:\d+: error: ", headline) or "error" in headline, headline
    assert time.monotonic() - start < SECONDS
