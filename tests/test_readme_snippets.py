"""The README's Python snippets, read from README.md itself, run as printed; values the README states in a
trailing comment (`expr  # 'value'`) are checked."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet(marker: str) -> str:
    """The one ```python block of README.md that contains `marker`."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} README python blocks contain {marker!r}"
    return found[0]


def _matches(value, stated) -> bool:
    """`stated` as the README writes it: `...` stands for any value, a dict names some of the keys."""
    if stated is Ellipsis:
        return True
    if isinstance(stated, list) and stated[-1:] == [Ellipsis]:  # [first, ...]: a list that starts so
        return isinstance(value, list) and len(value) >= len(stated) - 1 and value[: len(stated) - 1] == stated[:-1]
    if isinstance(stated, dict):
        return (
            isinstance(value, dict) and set(stated) <= set(value) and all(_matches(value[k], stated[k]) for k in stated)
        )
    return value == stated


def run_checking_comments(code: str, namespace: dict) -> int:
    """Exec `code` statement by statement; an expression statement whose comment is a Python literal must equal
    it. Returns how many stated values were checked."""
    checked = 0
    lines = code.splitlines()
    for node in ast.parse(code).body:
        stmt = ast.get_source_segment(code, node)
        exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
        comment = lines[node.end_lineno - 1].partition("  #")[2].strip()
        if isinstance(node, ast.Expr) and comment:
            try:
                stated = ast.literal_eval(comment)
            except (ValueError, SyntaxError):
                continue  # prose, not a value
            call = node.value
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "print" and len(call.args) == 1:
                stmt = ast.get_source_segment(code, call.args[0])  # `print(x)  # value`: the value is x's
            value = eval(stmt, namespace)  # noqa: S307
            assert _matches(value, stated), f"README says {stmt} is {comment}, got {value!r}"
            checked += 1
    return checked


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.RMSNorm(d)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(self.ln(x))))


class MyModel(nn.Module):
    """A user's model: nothing scalec-specific in it (the README leaves `model` to the reader)."""

    def __init__(self, d: int = 256, depth: int = 6, vocab: int = 256) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_api_tour_snippet_runs_and_states_true_values():
    ns: dict = {}
    assert run_checking_comments(snippet('p = scalec.load("completedp")'), ns) >= 3
    r = ns["p"].role_hparams("attn.q", ns["shape"], ns["hp"])
    assert r.lr > 0 and 0 <= r.beta1 < 1


@pytest.mark.slow
def test_own_model_snippet_plans_folds_and_trains():
    import scalec

    torch.manual_seed(0)
    ns: dict = {"model": MyModel(d=256, depth=6)}
    run_checking_comments(snippet('rules, {"n": 256, "L": 6'), ns)
    plan, model, opt = ns["plan"], ns["model"], ns["opt"]
    assert plan.folded == ["residual.mlp -> mlp.down (x 0.333333)"]  # m_L^-alpha at m_L = 3, alpha = 1
    # Folding removed every multiplier this model has no hook for (residual and readout).
    assert plan.multipliers["residual.mlp"] == 1.0 and plan.multipliers["output.mult"] == 1.0
    ref = scalec.load("completedp")
    unfolded = ref.role_hparams("mlp.down", ref.shape(n=256, L=6, B=2**14, D=2**28), ref.hparams(eta=2**-7))
    down = next(e for e in plan.entries if e.name == "blocks.0.down.weight")
    assert down.lr != unfolded.lr  # the residual multiplier m_L^-1 moved into mlp.down's lr and init
    x = torch.randint(0, 256, (4, 32))
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_runtime_snippet_plans_the_bundled_gpt(capsys):
    ns: dict = {}
    run_checking_comments(snippet("from scalec.runtime import make_plan, scale_lrs"), ns)
    assert capsys.readouterr().out.startswith("{")
    groups = ns["opt"].param_groups
    assert all(g["lr"] == pytest.approx(0.5 * g["base_lr"]) for g in groups)
