"""`scalec derive`: a parameterisation's exponents from the desiderata, solved as exact rational linear programmes.

Each role is described by its kind (embedding, hidden, readout, vector), its placement (inside the residual blocks
or not) and its optimizer.  Width (design.md, third round): a role's forward multiplier n^-a, init std n^-b and lr
n^-c enter training only through two invariants of its optimizer's abc-symmetry, p = a+b (output size at init) and
q, the update exponent (Adam a+c, SGD 2a+c, Muon a+c-adj).  The LP minimises sum q (the largest stable lrs:
maximal updates), then sum p (the largest stable init); a gauge then fixes a per role.  Depth: the residual branch
multiplier m_L^-alpha, the in-block lr m_L^-gamma with gamma minimal.  Batch and duration: the SDE equalities.
Every constraint names its source; an infeasible input is refused naming the smallest conflicting set.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from scalec.compiler.exact_lp import Infeasible, minimise
from scalec.compiler.optimizers import ADJUST_LR_WIDTH_EXPONENT, optimizer_of
from scalec.errors import ScalecError

KINDS: tuple[str, ...] = ("embedding", "hidden", "readout", "vector")
OPTIMIZER_CHOICES: tuple[str, ...] = ("adamw", "sgd", "muon")
GAUGES: dict[str, str] = {
    "table3": "no forward multipliers (a = 0): Tensor Programs V, Table 3",
    "mup": "a = 0 except the readout's init (b = 0): the `mup` package's readout multiplier (Table 8)",
    "unit": "unit init (b = 0), each scale carried by a forward multiplier: u-muP (arXiv 2407.17465)",
}
EPS_POLICIES: dict[str, str] = {
    "symmetry": "eps unscaled in the `mup` package's gauge, carried to this gauge by the abc-symmetry",
    "fixed": "eps never scales with width or depth (u-muP)",
    "gradient": "every role's eps tracks its gradient (Complete(d)P arXiv 2512.22382 Eq. 40; nanoGPT-mup completep)",
    "blocks": "hidden matrices' and in-block roles' eps track their gradient, the rest as `symmetry` (CompleteP "
    "arXiv 2505.01618 Table 1)",
}
DECAYS: tuple[str, ...] = ("coupled", "independent")
AXIS_WORDS: dict[str, str] = {"width": "n", "depth": "L", "batch": "B", "duration": "D"}
RATIO = {"n": "m_N", "L": "m_L", "B": "m_B", "D": "m_D", "d_head": "m_H"}

# Sources of the constraints (cited in the derived file's comments and in infeasibility messages).
TP4 = "TP4 Thm 3.3"
TP5 = "TP5 Table 3"
SPECTRAL = "spectral condition"
COMPLETEP = "CompleteP Sec. 3"
SDE = "SDE rules (Malladi et al.; Complete(d)P Table 1)"
TIMESCALE = "AdamW timescale B/(lr*lambda*D) fixed (Wang & Aitchison)"

# Update-exponent targets per optimizer theory and kind (the q at which a role's update is Theta(1)).
_UPDATE_TARGET = {
    "adamw": {"embedding": 0, "vector": 0, "hidden": 1, "readout": 1},
    "sgd": {"embedding": -1, "vector": -1, "hidden": 0, "readout": 1},
    "muon": {"hidden": 0},
}
_INIT_TARGET = {"embedding": 0, "vector": 0, "hidden": Fraction(1, 2), "readout": Fraction(1, 2)}
_HIDDEN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")
ALPHA = sympy.Symbol("alpha", real=True)


class DeriveError(ScalecError):
    """An input derive cannot solve: an unknown word, or desiderata that contradict each other."""


@dataclass(frozen=True)
class RoleSpec:
    """A role as derive sees it: kind, placement, and the axis its length follows (QK-norm gains: d_head)."""

    name: str
    kind: str
    in_blocks: bool = False
    size_axis: str = "n"
    zero_init: bool = False  # gains (init mean 1) and biases: no init-std rule
    shared_heads: bool = False  # one vector shared by the n/d_head heads (its gradient sums over them)
    optimizer: str | None = None  # this role's own optimizer (None: the spec's)


TRANSFORMER_ROLES: tuple[RoleSpec, ...] = (
    RoleSpec("embed", "embedding"),
    *(RoleSpec(r, "hidden", True) for r in _HIDDEN),
    RoleSpec("norm", "vector", True, zero_init=True),
    RoleSpec("qk_norm", "vector", True, size_axis="d_head", zero_init=True, shared_heads=True),
    RoleSpec("bias", "vector", True, zero_init=True),
    RoleSpec("final_norm", "vector", False, zero_init=True),
    RoleSpec("unembed", "readout"),
)


@dataclass(frozen=True)
class DeriveSpec:
    """What to derive: axes (width, depth, batch, duration), optimizer, gauge, eps policy, decay, params."""

    axes: tuple[str, ...] = ("width",)
    optimizer: str = "adamw"
    gauge: str = "table3"
    eps: str = "symmetry"
    decay: str = "coupled"
    adjust_lr: str = "original"
    alpha: tuple[sympy.Rational, sympy.Rational] = (sympy.Rational(1, 2), sympy.Integer(1))
    roles: tuple[RoleSpec, ...] = TRANSFORMER_ROLES
    name: str = "Derived"
    extends: str = "SP"

    def optimizer_of(self, role: RoleSpec) -> str:
        """Muon drives the hidden matrices only; embeddings, readouts and vectors keep AdamW (as muon.scale)."""
        if role.optimizer is not None:
            return role.optimizer
        if self.optimizer == "muon" and role.kind != "hidden":
            return "adamw"
        return self.optimizer


@dataclass(frozen=True)
class Bound:
    """One labelled linear constraint of an LP: `rel` is a sympy relational, `why` its source."""

    rel: sympy.Basic
    why: str


@dataclass
class RoleExponents:
    """Derived exponents of one role: {kind: {axis: exponent}} with kinds mult, init_std, lr, eps, wd, 1-beta."""

    spec: RoleSpec
    optimizer: str
    exps: dict[str, dict[str, sympy.Expr]] = field(default_factory=dict)
    why: dict[str, list[str]] = field(default_factory=dict)  # kind -> the constraints that bind it

    def because(self, kind: str, text: str) -> None:
        self.why.setdefault(kind, []).append(text)

    def add(self, kind: str, axis: str, value) -> None:
        value = sympy.nsimplify(value) if not isinstance(value, sympy.Basic) else value
        if value != 0:
            self.exps.setdefault(kind, {})[axis] = sympy.expand(self.exps.get(kind, {}).get(axis, 0) + value)


@dataclass
class Derivation:
    """The result: per-role exponents, forward sites, and the spec it answers."""

    spec: DeriveSpec
    roles: list[RoleExponents]
    sites: dict[str, str]
    invariants: dict[str, tuple[sympy.Rational, sympy.Rational]]
    depth_gamma: dict[int, sympy.Expr]


# --------------------------------------------------------------------------------------------- LP machinery
def solve_lexicographic(bounds: Sequence[Bound], objectives: Sequence[sympy.Expr], stage: str) -> dict:
    """Minimise each objective in turn (fixing the optimum of the previous ones); exact rationals throughout.
    An infeasible system is refused naming a minimal conflicting subset (deletion filter)."""
    symbols = sorted(set().union(*(b.rel.free_symbols for b in bounds)), key=str)
    rows = [(b.rel.lhs - b.rel.rhs, type(b.rel).__name__) for b in bounds]
    if _solve(rows, symbols, sympy.Integer(0)) is None:
        raise DeriveError(f"error: derive ({stage}): infeasible: {_conflict(bounds)}")
    point = None
    for objective in [*objectives, sympy.Integer(0)]:
        value, point = _solve(rows, symbols, objective)
        rows.append((objective - value, "Equality"))
    return dict(zip(symbols, point, strict=True))


def _solve(rows: list, symbols: list, objective: sympy.Expr):
    """min objective over the rows (expr == 0, expr >= 0 or expr <= 0) with free variables, exactly (exact_lp);
    None when infeasible."""
    if not symbols:
        return sympy.Integer(0), []
    exprs = [e for e, _ in rows] + [objective]
    A, b = sympy.linear_eq_to_matrix(exprs, symbols)
    op = {"Equality": "==", "GreaterThan": ">=", "LessThan": "<="}
    lp_rows = [
        ([_frac(A[i, j]) for j in range(len(symbols))], op[kind], _frac(b[i])) for i, (_, kind) in enumerate(rows)
    ]
    cost = [_frac(A[len(rows), j]) for j in range(len(symbols))]
    try:
        value, point = minimise(cost, lp_rows)
    except Infeasible:
        return None
    constant = -_frac(b[len(rows)])
    return sympy.Rational(value + constant), [sympy.Rational(v) for v in point]


def _frac(x) -> Fraction:
    x = sympy.Rational(x)
    return Fraction(int(x.p), int(x.q))


def _feasible(constraints: list) -> bool:
    symbols = sorted(set().union(*(c.free_symbols for c in constraints)), key=str) if constraints else []
    return _solve([(c.lhs - c.rhs, type(c).__name__) for c in constraints], symbols, sympy.Integer(0)) is not None


def _conflict(bounds: Sequence[Bound]) -> str:
    """The smallest set of constraints that still contradict each other, as `rel [source]; ...`."""
    kept = list(bounds)
    for b in list(bounds):
        trial = [k for k in kept if k is not b]
        if not _feasible([k.rel for k in trial]):
            kept = trial
    return "; ".join(f"{_rel_text(b.rel)} [{b.why}]" for b in kept)


def _rel_text(rel) -> str:
    op = {"Equality": "=", "GreaterThan": ">=", "LessThan": "<=", "StrictGreaterThan": ">"}[type(rel).__name__]
    return f"{rel.lhs} {op} {rel.rhs}"


# --------------------------------------------------------------------------------------------- width
def _width_bounds(spec: DeriveSpec, p: dict, q: dict) -> list[Bound]:
    out: list[Bound] = []
    readouts = [r for r in spec.roles if r.kind == "readout"]
    for r in spec.roles:
        opt = spec.optimizer_of(r)
        if r.kind not in _UPDATE_TARGET[opt]:
            raise DeriveError(f"error: derive: role {r.name} ({r.kind}) cannot use {opt}; muon drives hidden matrices")
        if r.size_axis != "n":  # nothing about this role grows with the width
            out += [Bound(sympy.Eq(p[r.name], 0), "fixed size"), Bound(sympy.Eq(q[r.name], 0), "fixed size")]
            continue
        init, target = _INIT_TARGET[r.kind], _UPDATE_TARGET[opt][r.kind]
        if r.kind == "readout":
            out.append(Bound(p[r.name] >= init, f"{TP4}: readout a+b >= 1/2 at init ({r.name})"))
        else:
            out.append(Bound(sympy.Eq(p[r.name], init), f"{TP4}: {r.kind} a+b = {init} at init ({r.name})"))
        out.append(Bound(q[r.name] >= target, f"{TP4}/{TP5 if opt != 'muon' else SPECTRAL}: stable update ({r.name})"))
        if r.kind != "readout":  # feeds the residual stream: the readout must absorb its feature updates
            for ro in readouts:
                out.append(
                    Bound(
                        p[ro.name] + q[r.name] - target >= 1,
                        f"{TP4}: a+b+r >= 1 for readout {ro.name} during training ({r.name} feeds it)",
                    )
                )
    return out


def _width_invariants(spec: DeriveSpec) -> dict[str, tuple]:
    p = {r.name: sympy.Symbol(f"p[{r.name}]") for r in spec.roles}
    q = {r.name: sympy.Symbol(f"q[{r.name}]") for r in spec.roles}
    bounds = _width_bounds(spec, p, q)
    point = solve_lexicographic(bounds, [sum(q.values()), sum(p.values())], "width")
    return {r.name: (point.get(p[r.name], 0), point.get(q[r.name], 0)) for r in spec.roles}


def _gauge_abc(spec: DeriveSpec, role: RoleSpec, p, q) -> tuple:
    """(a, b, c) from the invariants and the gauge's equality for this role."""
    opt = spec.optimizer_of(role)
    adj = ADJUST_LR_WIDTH_EXPONENT[spec.adjust_lr] if opt == "muon" else 0
    if spec.gauge == "table3":
        a = sympy.Integer(0)
    elif spec.gauge == "mup":
        a = p if role.kind == "readout" else sympy.Integer(0)
    else:  # unit: b = 0
        a = p
    b = p - a
    if opt == "sgd":
        c = q - 2 * a
    elif opt == "muon":
        c = q - a + adj
    else:
        c = q - a
    return a, b, c


def _mup_gauge_a(role: RoleSpec, p) -> sympy.Expr:
    return p if role.kind == "readout" else sympy.Integer(0)


# --------------------------------------------------------------------------------------------- depth
@functools.lru_cache(maxsize=16)
def _depth_gamma(k: int, alpha_range: tuple) -> sympy.Expr:
    """Minimal in-block lr exponent gamma (lr ~ m_L^-gamma) for update order k (1 Adam/Muon, 2 SGD), as an affine
    function of alpha: the LP is solved at both ends of alpha's range, and a constraint binding at both ends gives
    gamma(alpha) (it bounds gamma from below for every alpha, and equality with it is feasible in between)."""
    gamma = sympy.Symbol("gamma")
    common: set[int] | None = None
    for end in dict.fromkeys(alpha_range):
        bounds = _depth_bounds(gamma, end, k)
        point = solve_lexicographic(bounds, [gamma], f"depth at alpha = {end}")
        tight = {
            i for i, b in enumerate(bounds) if sympy.simplify(b.rel.lhs - b.rel.rhs).subs(gamma, point[gamma]) == 0
        }
        common = tight if common is None else common & tight
    if not common:
        raise DeriveError(
            f"error: derive (depth): the binding constraint changes over alpha in [{alpha_range[0]}, "
            f"{alpha_range[1]}]; pin alpha with --param alpha=VALUE"
        )
    rel = _depth_bounds(gamma, ALPHA, k)[max(common)].rel
    return sympy.expand(sympy.solve(sympy.Eq(rel.lhs, rel.rhs), gamma)[0])


def _depth_bounds(gamma, alpha, k: int) -> list[Bound]:
    """The depth desiderata for branch multiplier m_L^-alpha and in-block lr m_L^-gamma (update order k)."""
    return [
        Bound(gamma + (k - 1) * alpha >= 0, f"{COMPLETEP}: each block's own update stays bounded"),
        Bound(gamma + k * alpha >= 1, f"{COMPLETEP}: the residual stream's update summed over L blocks stays bounded"),
    ]


def _alpha_bounds(alpha) -> list[Bound]:
    """alpha's own desiderata: a stable residual stream at init, and blocks that do not vanish."""
    return [
        Bound(alpha >= sympy.Rational(1, 2), f"{COMPLETEP}: stable residual stream at init (alpha >= 1/2)"),
        Bound(alpha <= 1, f"{COMPLETEP}: blocks keep a Theta(1/L) share (alpha <= 1)"),
    ]


# --------------------------------------------------------------------------------------------- batch, duration
@functools.lru_cache(maxsize=16)
def _sde_exponents(axes: tuple[str, ...], decay: str) -> dict[str, dict[str, sympy.Expr]]:
    """lr, 1-beta, eps and weight-decay exponents along B and D from the SDE equalities, solved as an LP."""
    names = ("lr", "1-beta", "eps", "weight_decay")
    out: dict[str, dict[str, sympy.Expr]] = {n: {} for n in names}
    for axis in axes:
        sign = 1 if axis == "B" else -1
        v = {n: sympy.Symbol(f"{n}_{axis}") for n in names}
        wd_sum = v["lr"] + v["weight_decay"] if decay == "coupled" else v["weight_decay"]
        bounds = [
            Bound(sympy.Eq(v["lr"], sign * sympy.Rational(1, 2)), f"{SDE}: lr ~ sqrt(B/D)"),
            Bound(sympy.Eq(v["1-beta"], sign), f"{SDE}: (1-beta) D/B fixed"),
            Bound(sympy.Eq(v["eps"], -sign * sympy.Rational(1, 2)), f"{SDE}: eps tracks the gradient noise"),
            Bound(sympy.Eq(wd_sum, sign), f"{TIMESCALE}"),
        ]
        point = solve_lexicographic(bounds, [], "batch" if axis == "B" else "duration")
        for n in names:
            out[n][axis] = point[v[n]]
    return out


# --------------------------------------------------------------------------------------------- derive
def derive(spec: DeriveSpec) -> Derivation:
    """Solve the desiderata for every role of `spec`; raises DeriveError for an impossible input."""
    _validate(spec)
    axes = {AXIS_WORDS[a] for a in spec.axes}
    roles = [RoleExponents(r, spec.optimizer_of(r)) for r in spec.roles]
    invariants = _width_invariants(spec) if "n" in axes else {}
    readout_p = max(
        (invariants[r.name][0] for r in spec.roles if r.kind == "readout" and r.name in invariants),
        default=sympy.Integer(1),
    )
    for re in roles:
        r, opt = re.spec, re.optimizer
        if "n" in axes and r.size_axis == "n":
            _width_rules(spec, re, *invariants[r.name], readout_p)
        elif "n" in axes and r.shared_heads and _has(opt, "eps") and spec.eps in ("gradient", "blocks"):
            # One vector shared by n/d_head heads: its gradient sums n/d_head per-head terms of size n^-p_readout.
            re.add("eps", "n", 1 - readout_p)
            re.because("eps", f"tracks its gradient: a sum over n/d_head heads ({spec.eps} policy)")
        if "n" in axes and r.size_axis == "d_head" and opt == "sgd":
            re.add("lr", "d_head", -(_UPDATE_TARGET["sgd"]["vector"]))
            re.because("lr", f"vector-like along d_head: 2a+c = -1 [{TP5}, SGD column]")
        if "L" in axes and r.in_blocks:
            k = 2 if opt == "sgd" else 1
            gamma = _depth_gamma(k, spec.alpha)
            re.add("lr", "L", -gamma)
            re.because("lr", f"in blocks: m_L^-gamma with gamma + {k if k > 1 else ''}alpha >= 1 binding [{COMPLETEP}]")
            if _has(opt, "eps") and spec.eps in ("gradient", "blocks"):
                re.add("eps", "L", -ALPHA)
                re.because("eps", "in blocks: the gradient carries the branch multiplier m_L^-alpha")
        for axis in ("B", "D"):
            if axis in axes:
                _sde_rules(re, axis, _sde_exponents((axis,), spec.decay))
        # Coupled decay keeps lr * wd fixed along width (the `mup` package; TP5): wd takes lr's inverse.  Along depth
        # CompleteP and Complete(d)P leave the coupled decay unscaled (Table 1 of each).
        if spec.decay == "coupled":
            for axis, e in list(re.exps.get("lr", {}).items()):
                if axis in ("n", "d_head"):
                    re.add("weight_decay", axis, -e)
                    re.because("weight_decay", "coupled decay: lr * weight_decay fixed along width")
    sites = _sites(spec, axes, roles)
    gammas = {k: _depth_gamma(k, spec.alpha) for k in (1, 2)} if "L" in axes else {}
    return Derivation(spec, roles, sites, invariants, gammas)


def _width_rules(spec: DeriveSpec, re: RoleExponents, p, q, readout_p) -> None:
    r, opt = re.spec, re.optimizer
    a, b, c = _gauge_abc(spec, r, p, q)
    re.add("mult", "n", -a)
    if a != 0:
        re.because("mult", f"gauge {spec.gauge}: a = {a}")
    if not r.zero_init:
        re.add("init_std", "n", -b)
        bind = (
            f"a+b = {p}: a+b+r >= 1 with r = 0 binds [{TP4}]"
            if r.kind == "readout"
            else f"a+b = {p}: stable init [{TP4}]"
        )
        re.because("init_std", bind)
    re.add("lr", "n", -c)
    source = SPECTRAL if opt == "muon" else TP5
    re.because("lr", f"{_q_text(opt)} = {q}: the largest stable update [{source}]")
    if _has(opt, "eps"):
        e = _eps_width(spec, r, a, p, readout_p)
        if opt == "muon" and spec.eps in ("gradient", "blocks"):
            # Muon's eps guards the momentum's Frobenius norm: n^2 entries of the gradient's size.
            e += 1
            re.because("eps", "Muon: tracks the gradient's Frobenius norm")
        re.add("eps", "n", e)
        re.because("eps", f"{spec.eps} policy")


def _sde_rules(re: RoleExponents, axis: str, sde: dict) -> None:
    re.add("lr", axis, sde["lr"][axis])
    if _has(re.optimizer, "eps"):
        re.add("eps", axis, sde["eps"][axis])
    if _has(re.optimizer, "beta1"):
        re.add("1-beta1", axis, sde["1-beta"][axis])
        re.add("1-beta2", axis, sde["1-beta"][axis])
    re.add("weight_decay", axis, sde["weight_decay"][axis])


def _q_text(opt: str) -> str:
    return {"sgd": "2a+c", "muon": "a+c-adj"}.get(opt, "a+c")


def _has(opt: str, target: str) -> bool:
    return target in optimizer_of(opt).all_targets()


def _eps_width(spec: DeriveSpec, role: RoleSpec, a, p, readout_p) -> sympy.Expr:
    """Width exponent of eps under the spec's policy (eps tracks the gradient; see EPS_POLICIES)."""
    gradient = -a if role.kind == "readout" else -a - readout_p
    symmetry = _mup_gauge_a(role, p) - a
    if spec.eps == "fixed":
        return sympy.Integer(0)
    if spec.eps == "gradient" or (spec.eps == "blocks" and (role.in_blocks or role.kind == "hidden")):
        return gradient
    return symmetry


def _sites(spec: DeriveSpec, axes: set, roles: list[RoleExponents]) -> dict[str, str]:
    sites: dict[str, str] = {}
    for re in roles:
        if re.spec.name == "unembed" and re.exps.get("mult") and spec.gauge == "mup":  # as the `mup` package
            sites["output.mult"] = _monomial(re.exps.pop("mult"))
    if "n" in axes:
        sites["attn.scale"] = "d_head0^(1/2) * d_head^-1"
    if "L" in axes:
        sites["residual.attn, residual.mlp"] = "m_L^-alpha"
    return sites


def _validate(spec: DeriveSpec) -> None:
    checks = [
        ("axis", spec.axes, AXIS_WORDS),
        ("optimizer", (spec.optimizer,), OPTIMIZER_CHOICES),
        ("gauge", (spec.gauge,), GAUGES),
        ("eps policy", (spec.eps,), EPS_POLICIES),
        ("decay", (spec.decay,), DECAYS),
        ("adjust_lr", (spec.adjust_lr,), ADJUST_LR_WIDTH_EXPONENT),
    ]
    for what, given, allowed in checks:
        for g in given:
            if g not in allowed:
                raise DeriveError(f"error: derive: unknown {what} '{g}'; use one of {', '.join(allowed)}")
    if not spec.axes:
        raise DeriveError("error: derive: no axes; use --axes width[,depth,batch,duration]")
    for r in spec.roles:
        if r.kind not in KINDS:
            raise DeriveError(f"error: derive: role {r.name} has unknown kind '{r.kind}'; use {', '.join(KINDS)}")
    if spec.optimizer in ("sgd", "muon") and {"batch", "duration"} & set(spec.axes):
        raise DeriveError(
            f"error: derive: batch and duration rules are derived for AdamW only (the SDE rules of Malladi et al. "
            f"2022); got --optimizer {spec.optimizer}"
        )
    lo, hi = spec.alpha
    if "depth" in spec.axes and not (lo <= hi):
        raise DeriveError(f"error: derive: alpha range [{lo}, {hi}] is empty")
    if "depth" in spec.axes:
        a = sympy.Symbol("alpha")
        for end in (lo, hi):
            bounds = [Bound(sympy.Eq(a, end), f"--param alpha={end}"), *_alpha_bounds(a)]
            if not _feasible([b.rel for b in bounds]):
                raise DeriveError(f"error: derive (depth): infeasible: {_conflict(bounds)}")


# --------------------------------------------------------------------------------------------- text
def _monomial(exps: Mapping[str, sympy.Expr]) -> str:
    parts = []
    for axis in ("n", "L", "B", "D", "d_head"):
        e = exps.get(axis)
        if e is None or e == 0:
            continue
        parts.append(RATIO[axis] if e == 1 else f"{RATIO[axis]}^{_exp_text(e)}")
    return " * ".join(parts) if parts else "1"


def _exp_text(e: sympy.Expr) -> str:
    e = sympy.nsimplify(e)
    if e.is_Integer:
        return str(e)
    if e.is_Rational:
        return f"({e.p}/{e.q})"
    return f"({sympy.sstr(e).replace('**', '^')})"
