"""Studies with your own model and training loop (`scalec.sweep(..., build=, objective=)`): a small MLP regression and
a small CNN on synthetic data are bound, planned, initialised and hooked before the objective runs; the roles, the
optimizer's per-group lrs and the hooked multiplier match muP's table by hand; bad objectives are one line each and a
study keeps its finished runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import scalec
from scalec.runtime.studies.user_model import UserModelError

# muP as bundled: base width 128 (`scalec show mup`); at width 32, m_N = 1/4.
BASE_WIDTH = 128
TINY_MUP = 'parameterisation TinymuP extends muP\n  "muP for few-step tests."\n  axis D = 2^22 in [2^8, 2^44]\n'
SEEN: dict[str, object] = {}


@pytest.fixture(scope="module")
def rule(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "tiny_mup.scale"
    path.write_text(TINY_MUP)
    return str(path)


def mlp(width: int, depth: int) -> nn.Module:
    """8 inputs -> `depth` hidden layers of `width` -> 1 output."""
    layers: list[nn.Module] = [nn.Linear(8, width), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def regression(model: nn.Module, optimizer: torch.optim.Optimizer, run) -> float:
    """Fit y = sin(x . w) on 256 fixed points for run.steps full-batch steps; the final training MSE."""
    SEEN["lrs"] = {role: g["lr"] for g in optimizer.param_groups for role in g["roles"]}
    SEEN["shape"], SEEN["device"] = dict(run.shape), run.device
    with torch.no_grad():  # the layers called one by one miss the hook on the model's output
        probe = plain = torch.ones(1, 8)
        for layer in model:
            plain = layer(plain)
        SEEN["output_ratio"] = (model(probe) / plain).item()
    g = torch.Generator().manual_seed(1234)
    x, w = torch.randn(256, 8, generator=g), torch.randn(8, generator=g)
    y = torch.sin(x @ w)
    for step in range(run.steps):
        loss = F.mse_loss(model(x).squeeze(-1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.report(step + 1, loss.item())
    with torch.no_grad():
        return F.mse_loss(model(x).squeeze(-1), y).item()


class CNN(nn.Module):
    """A stem conv (3 -> width), `depth` width -> width 3x3 convs, global pooling, a 4-way linear readout."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        for conv in self.body:
            h = F.relu(conv(h))
        return self.head(h.mean(dim=(2, 3)))


def classify(model: nn.Module, optimizer: torch.optim.Optimizer, run) -> float:
    """4 classes of 8x8 images, each a class-dependent colour plus noise; the final cross-entropy."""
    g = torch.Generator().manual_seed(run.seed)
    labels = torch.arange(64) % 4
    colours = torch.randn(4, 3, 1, 1, generator=g)
    x = colours[labels] + 0.5 * torch.randn(64, 3, 8, 8, generator=g)
    for step in range(run.steps):
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.report(step + 1, loss.item())
    with torch.no_grad():
        return F.cross_entropy(model(x), labels).item()


def _runs(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/result.json"))]


@pytest.mark.slow
def test_mlp_regression_is_bound_planned_and_learns(tmp_path, rule):
    out = tmp_path / "mlp"
    rows = scalec.sweep(
        rule, {"eta": [2**-8, 2**-5]}, build=mlp, objective=regression, width=32, depth=1, steps=30, out=out
    )
    assert [r.status for r in rows] == ["finished", "finished"]
    # An untrained net predicts ~0: MSE ~ E[sin^2] ~ 0.4; 30 Adam steps fit much of it.
    assert rows[0].loss < 0.25
    # muP with Adam, Table 8 form (as bundled): input and readout lr eta, hidden lr eta / m_N, readout mult 1/m_N.
    lrs = SEEN["lrs"]
    m_n = 32 / BASE_WIDTH
    assert math.isclose(lrs["mlp.up"] / lrs["embed"], 1 / m_n) and lrs["unembed"] == lrs["embed"]
    assert SEEN["shape"]["n"] == 32 and SEEN["shape"]["L"] == 1 and SEEN["device"].type in ("cpu", "cuda")
    result = _runs(out)[0]["summary"]
    binding = result["binding"]
    assert binding["parameters"] == {
        "0.weight": "embed",
        "0.bias": "bias",
        "2.weight": "mlp.up",
        "2.bias": "bias",
        "4.weight": "unembed",
        "4.bias": "bias",
    }
    # The readout multiplier 1/m_N (muP Table 8 form as bundled) is applied by a hook on the model's output.
    assert binding["hooks"]["output.mult x mult[unembed]"]["factor"] == pytest.approx(1 / m_n)
    assert SEEN["output_ratio"] == pytest.approx(1 / m_n)
    assert result["reports"] == 30
    again = scalec.sweep(
        rule, {"eta": [2**-8, 2**-5]}, build=mlp, objective=regression, width=32, depth=1, steps=30, out=out
    )
    assert [r.loss for r in again] == [r.loss for r in rows]  # reused from the store, not retrained


@pytest.mark.slow
def test_cnn_kernels_bind_as_hidden_matrices_with_fan_in_c_in_k_k(tmp_path, rule):
    out = tmp_path / "cnn"
    rows = scalec.sweep(rule, {"eta": [2**-6]}, build=CNN, objective=classify, width=16, depth=2, steps=15, out=out)
    assert rows[0].status == "finished" and rows[0].loss < math.log(4)  # below chance after 15 steps
    plan = json.loads(next(out.glob("runs/*/train/plan.json")).read_text())
    entries = {p["name"]: p for p in plan["parameters"]}
    assert plan["binding"]["parameters"]["body.0.weight"] == "mlp.up"
    assert (entries["body.0.weight"]["fan_in"], entries["body.0.weight"]["fan_out"]) == (16 * 3 * 3, 16)
    assert plan["binding"]["parameters"]["stem.weight"] == "embed"
    assert (entries["stem.weight"]["fan_in"], entries["stem.weight"]["fan_out"]) == (3 * 3 * 3, 16)
    assert plan["binding"]["parameters"]["head.weight"] == "unembed"


def returns_text(model, optimizer, run):
    return "low"


def returns_nan(model, optimizer, run):
    return float("nan")


def raises_on_large_eta(model, optimizer, run):
    if run.hp["eta"] > 0.01 and not SEEN.get("fixed"):
        raise RuntimeError("out of memory")
    return 1.0 + run.hp["eta"]


def not_a_module(width, depth):
    return width


@pytest.mark.slow
def test_bad_objectives_are_one_line_and_a_study_keeps_its_finished_runs(tmp_path, rule):
    common = {"build": mlp, "width": 32, "depth": 1, "steps": 2}
    with pytest.raises(UserModelError, match=r"returns_text at n=32, L=1, seed=0 returned str, not a number"):
        scalec.sweep(rule, {"eta": [2**-8]}, objective=returns_text, out=tmp_path / "a", **common)
    rows = scalec.sweep(rule, {"eta": [2**-8]}, objective=returns_nan, out=tmp_path / "b", **common)
    assert rows[0].status == "diverged" and math.isinf(rows[0].loss)
    with pytest.raises(UserModelError, match=r"raises_on_large_eta at n=32, L=1, seed=0 raised RuntimeError: out of"):
        scalec.sweep(rule, {"eta": [2**-8, 2**-5]}, objective=raises_on_large_eta, out=tmp_path / "c", **common)
    assert [r["status"] for r in _runs(tmp_path / "c")].count("finished") == 1
    SEEN["fixed"] = True
    try:
        rows = scalec.sweep(rule, {"eta": [2**-8, 2**-5]}, objective=raises_on_large_eta, out=tmp_path / "c", **common)
    finally:
        SEEN.pop("fixed")
    assert sorted(r.loss for r in rows) == [1.0 + 2**-8, 1.0 + 2**-5]
    with pytest.raises(UserModelError, match=r"not_a_module\(32, 1\) returned int, not a torch nn.Module"):
        scalec.sweep(
            rule, {"eta": [2**-8]}, objective=returns_nan, out=tmp_path / "d", **{**common, "build": not_a_module}
        )
    with pytest.raises(
        UserModelError, match=r"mlp\(32, 1\): 5 model parameter\(s\) match no role in the patterns: .0.bias."
    ):
        scalec.sweep(
            rule, {"eta": [2**-8]}, objective=returns_nan, roles={"0.weight": "embed"}, out=tmp_path / "e", **common
        )


@pytest.mark.slow
def test_transfer_of_your_loop_records_each_sizes_binding(tmp_path, rule):
    out = tmp_path / "tr"
    results = scalec.transfer(
        rule,
        {"eta": "2^-9..2^-5:3"},
        {"width": 16},
        {"width": 32},
        build=mlp,
        objective=regression,
        depth=1,
        steps=10,
        out=out,
    )
    assert [c.size for c in results[0].curves] == [16, 32]
    data = json.loads((out / "transfer.json").read_text())
    bindings = data["binding"][rule]
    assert sorted(bindings) == ["16", "32"] and bindings["16"]["parameters"]["2.weight"] == "mlp.up"
    # The readout multiplier 1/m_N: 128/16 = 8 at the base, 128/32 = 4 at the target.
    assert bindings["16"]["hooks"]["output.mult x mult[unembed]"]["factor"] == pytest.approx(8.0)
    assert bindings["32"]["hooks"]["output.mult x mult[unembed]"]["factor"] == pytest.approx(4.0)
    assert data["model"].endswith("test_user_objective.mlp") and len(data["model_sha256"]) == 64


def slow_to_learn(model, optimizer, run):
    """Reports a loss that only a high eta brings down: the median pruner stops the low-eta trials early."""
    for step in range(1, run.steps + 1):
        run.report(step, 1.0 / (1.0 + step * run.hp["eta"]))
    return 1.0 / (1.0 + run.steps * run.hp["eta"])


@pytest.mark.slow
def test_search_runs_your_loop_and_prunes_through_run_report(tmp_path, rule):
    pytest.importorskip("optuna")
    result = scalec.search(
        rule,
        "eta",
        build=mlp,
        objective=slow_to_learn,
        trials=8,
        sampler="random",
        width=32,
        depth=1,
        steps=20,
        out=tmp_path / "se",
    )
    assert len(result.trials) >= 1 and result.best_value is not None and math.isfinite(result.best_value)
    import optuna

    study = optuna.load_study(
        study_name=result.study_name,
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "se" / "study.journal"))
        ),
    )
    states = [t.state.name for t in study.trials]
    assert any(t.state.name == "PRUNED" and t.user_attrs.get("pruned") for t in study.trials), states
    assert states.count("COMPLETE") == 8, states


@pytest.mark.slow
def test_coord_check_of_your_loop_fails_sp_and_passes_mup(tmp_path):
    """An MLP trained 3 Adam steps at eta 2^-6 by `regression`, widths 32..256: under SP the hidden layer's and the
    output's update grow with width (Adam's update of an n-wide matrix moves its output ~n), under muP they do not."""
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    kwargs = {"build": mlp, "objective": regression, "example": x, "widths": (32, 64, 128, 256), "depths": (1,)}
    kwargs.update(steps=3, seeds=1, hp={"eta": 2**-6})
    sp = scalec.coord_check(rule="sp", **kwargs)
    assert sp.status("width") == "unstable"
    assert sp.verdict("width", "mlp.up").update_ratio > 2.5 and sp.verdict("width", "output").update_ratio > 4
    mup = scalec.coord_check(rule="mup", out=tmp_path, **kwargs)
    assert mup.status("width") == "pass", mup.verdicts
    data = json.loads((tmp_path / "coord_check.json").read_text())
    assert data["bindings"]["n=256,L=1"]["hooks"]["output.mult x mult[unembed]"]["factor"] == pytest.approx(0.5)
