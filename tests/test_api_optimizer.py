"""`scalec.optimizer`: one call binds, plans, initialises and returns the optimizer, with the settings the rule's
tables give (derived here by hand), and refuses exactly where make_plan refuses, with make_plan's line."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import scalec
from scalec.runtime import PlanOptimizer, make_plan, scale_lrs

RULES = Path(__file__).resolve().parents[1] / "rules"
ROLES = {
    "tok.weight": "embed",
    "*.up.weight": "mlp.up",
    "*.down.weight": "mlp.down",
    "*.ln.weight": "norm",
    "norm.weight": "final_norm",
    "head.weight": "unembed",
}


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.RMSNorm(d)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(self.ln(x))))


class Net(nn.Module):
    """A user's residual MLP language model: nothing scalec-specific in it."""

    def __init__(self, d: int = 256, depth: int = 2, tied: bool = False) -> None:
        super().__init__()
        self.tok = nn.Embedding(256, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, 256, bias=False)
        if tied:
            self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


def _by_role(opt) -> dict[str, dict]:
    return {role: g for g in opt.param_groups for role in g["roles"]}


def test_mup_groups_are_the_hand_derived_table8_values_with_the_readout_folded():
    # muP (Table 8) at width 256 over the base 128 (m_N = 2), eta = 2^-7, SP's wd 0.1, eps 1e-8, sigma 0.02:
    # hidden lr eta/m_N and coupled wd 0.1*m_N; embedding and vectors unscaled; the readout's 1/m_N multiplier
    # folded into the readout by the Adam symmetry: lr x 1/2, init std x 1/2, eps x 2, wd x 2.
    model = Net(d=256)
    opt = scalec.optimizer(model, "mup", {"n": 256}, {"eta": 2**-7}, roles=ROLES, fold=True)
    assert isinstance(opt, torch.optim.AdamW)
    g = _by_role(opt)
    assert g["mlp.up"]["lr"] == g["mlp.down"]["lr"] == 2**-8
    assert g["mlp.up"]["weight_decay"] == pytest.approx(0.2)
    assert g["embed"]["lr"] == g["norm"]["lr"] == g["final_norm"]["lr"] == 2**-7
    assert g["embed"]["weight_decay"] == pytest.approx(0.1)
    assert g["unembed"]["lr"] == 2**-8 and g["unembed"]["eps"] == pytest.approx(2e-8)
    assert g["unembed"]["weight_decay"] == pytest.approx(0.2)
    assert all(grp["betas"] == (0.9, 0.95) and grp["base_lr"] == grp["lr"] for grp in opt.param_groups)
    # Every parameter is in exactly one group.
    held = [p for grp in opt.param_groups for p in grp["params"]]
    assert len(held) == len({id(p) for p in held}) == len(list(model.parameters()))


def test_optimizer_initialises_the_model_with_the_planned_stds():
    # Hidden init std sigma/sqrt(m_N) = 0.02/sqrt(2); the folded readout 0.02/2; norms constant 1.
    model = Net(d=256)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    scalec.optimizer(model, "mup", {"n": 256}, roles=ROLES, fold=True, generator=torch.Generator().manual_seed(0))
    assert model.blocks[0].up.weight.std().item() == pytest.approx(0.02 / math.sqrt(2), rel=0.02)
    assert model.head.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert model.tok.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert torch.equal(model.norm.weight, torch.ones(256))


def test_init_false_leaves_the_weights_alone():
    model = Net(d=256)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    scalec.optimizer(model, "mup", {"n": 256}, roles=ROLES, fold=True, init=False)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_rule_by_name_by_path_and_loaded_plan_alike():
    def lrs(rule):
        opt = scalec.optimizer(Net(d=256), rule, {"n": 256}, roles=ROLES, fold=True)
        return sorted((tuple(g["roles"]), g["lr"], g["eps"]) for g in opt.param_groups)

    assert lrs("mup") == lrs(RULES / "mup.scale") == lrs(str(RULES / "mup.scale")) == lrs(scalec.load("mup"))


def test_the_plan_rides_on_the_optimizer_and_schedules_scale_each_group():
    opt = scalec.optimizer(Net(d=256), "mup", {"n": 256}, roles=ROLES, fold=True)
    plan = opt.scalec_plan
    assert isinstance(plan, scalec.Plan) and plan.entry("head.weight").lr == _by_role(opt)["unembed"]["lr"]
    scale_lrs(opt, 0.25)
    assert all(g["lr"] == 0.25 * g["base_lr"] for g in opt.param_groups)
    assert scalec.plan(Net(d=256), "mup", {"n": 256}, roles=ROLES, fold=True).to_dict() == plan.to_dict()


def test_a_muon_rule_returns_the_plan_optimizer_stepping_muon_and_adamw():
    opt = scalec.optimizer(Net(d=256), "muon", {"n": 256}, roles=ROLES, fold=True)
    assert isinstance(opt, PlanOptimizer) and set(opt.optimizers) == {"muon", "adamw"}
    muon = {r for g in opt.optimizers["muon"].param_groups for r in g["roles"]}
    assert muon == {"mlp.down", "mlp.up"}


def test_torch_options_reach_the_torch_optimizer():
    opt = scalec.optimizer(Net(d=256), "mup", {"n": 256}, roles=ROLES, fold=True, fused=False, foreach=False)
    assert opt.defaults["foreach"] is False and opt.defaults["fused"] is False


REFUSALS = [
    # (what, model, rule, shape, hp, options): each refused by make_plan
    ("unknown axis", Net, "mup", {"width": 256}, None, {"roles": ROLES}),
    ("hp outside its domain", Net, "mup", {"n": 256}, {"eta": -1.0}, {"roles": ROLES}),
    ("unknown hp", Net, "mup", {"n": 256}, {"etaa": 0.1}, {"roles": ROLES}),
    ("unbound parameters", Net, "mup", {"n": 256}, None, {"roles": {"tok.weight": "embed"}}),
    ("shape disagrees with the model", Net, "mup", {"n": 512}, None, {"roles": ROLES}),
    ("multiplier not applied, no fold", Net, "completep", {"n": 256, "L": 4}, None, {"roles": ROLES}),
    ("tied readout cannot fold", lambda: Net(tied=True), "mup", {"n": 256}, None, {"roles": ROLES, "fold": True}),
    ("not a parameterisation", Net, 42, {"n": 256}, None, {"roles": ROLES}),
]


@pytest.mark.parametrize("what,build,rule,shape,hp,options", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_optimizer_refuses_where_make_plan_refuses_with_its_line(what, build, rule, shape, hp, options):
    rules = scalec.load(rule) if isinstance(rule, str) else rule
    patterns = options.get("roles")
    with pytest.raises(scalec.ScalecError) as by_make_plan:
        make_plan(rules, build(), shape, hp, patterns=patterns, fold=options.get("fold"))
    model = build()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(scalec.ScalecError) as by_optimizer:
        scalec.optimizer(model, rule, shape, hp, **options)
    assert type(by_optimizer.value) is type(by_make_plan.value)
    assert str(by_optimizer.value) == str(by_make_plan.value)
    assert str(by_optimizer.value).startswith("error: ") and "\n" not in str(by_optimizer.value)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # refused before any init


def test_importing_scalec_loads_no_torch_and_the_faces_resolve():
    import subprocess

    code = "import sys, scalec; print(sorted(m for m in ('torch', 'sympy', 'lark', 'jinja2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import scalec.runtime as runtime

    for face in (scalec, runtime):
        assert all(getattr(face, name) is not None for name in face.__all__)


@pytest.mark.slow
def test_optimizer_and_hooks_from_a_compiled_rule_import_no_compiler_packages(tmp_path):
    # torch's own Optimizer imports torch._dynamo and with it sympy; no scalec module may import sympy, lark or
    # jinja2, nor the compiler's parser, checks, codegen or folding.
    import subprocess

    source = tmp_path / "compiled_mup.py"
    source.write_text(scalec.load("mup").source)
    code = f"""
import builtins, importlib.util, sys, torch
from torch import nn
spec = importlib.util.spec_from_file_location("compiled_rule", {str(source)!r})
rule = importlib.util.module_from_spec(spec); sys.modules["compiled_rule"] = rule; spec.loader.exec_module(rule)
importers, _import = {{}}, builtins.__import__
def watch(name, globals=None, *args, **kwargs):
    top = name.split(".")[0]
    if top in ("sympy", "lark", "jinja2") and top not in sys.modules and top not in importers:
        importers[top] = (globals or {{}}).get("__name__", "?")
    return _import(name, globals, *args, **kwargs)
builtins.__import__ = watch
import scalec
model = nn.Sequential()
model.add_module("tok", nn.Embedding(256, 256)); model.add_module("head", nn.Linear(256, 256, bias=False))
roles = {{"tok.weight": "embed", "head.weight": "unembed"}}
opt = scalec.optimizer(model, rule, {{"n": 256, "d_head": 32}}, roles=roles, applied_sites=scalec.HOOKABLE)
assert scalec.apply_multipliers(model, opt.scalec_plan).applied == {{"output.mult": 0.5}}
print(sorted(f"{{m}} (by {{who}})" for m, who in importers.items() if who.startswith("scalec"))
      + sorted(m for m in sys.modules if m.startswith(("scalec.dsl", "scalec.compiler.parameterisation",
               "scalec.compiler.folding", "scalec.compiler.codegen", "scalec.compiler.checks"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
