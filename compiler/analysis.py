"""Symbolic analysis behind `show` and `compare`: desiderata verdicts and abc-symmetry equivalence, each role
judged by the theory of its own optimizer (compiler/optimizers.py).

Width: with a = -exponent of a role's forward multiplier, b = -exponent of its init std and c = -exponent of its
LR (all in m_N), init is stable when a+b = 0 (input/vector), 1/2 (hidden), >= 1/2 (output), and updates are
maximal and stable (Theta(1) feature updates) when
  Adam (Tensor Programs V, Table 3/8):     a+c  = 0 (input/vector), 1 (hidden), 1 (output);
  SGD (Tensor Programs V, Table 3, SGD):   2a+c = -1 (input/vector), 0 (hidden), 1 (output)  (SGD's update is
                                           linear in the gradient, so the multiplier enters twice);
  Muon (spectral condition, Yang-Simon-Bernstein 2023): the update's spectral norm mult * lr * adjust(shape)
                                           ~ sqrt(fan_out/fan_in), width-free for hidden matrices: -a-c+adj = 0
                                           with adj the width exponent of torch's adjust_lr_fn.
A role's update grows like n^u (u > 0 unstable, u < 0 lazy, u = 0 feature learning); r (TP IV) := min over roles
of -u.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from scalec.compiler.exponents import (
    effective_mult,
    fmt_fraction,
    monomial_exponents,
    one_minus,
    per_role,
    to_fraction,
)
from scalec.compiler.ir import ParameterisationIR
from scalec.compiler.optimizers import ADJUST_LR_WIDTH_EXPONENT, optimizer_of
from scalec.compiler.vocabulary import (
    AXES,
    BLOCK_ROLES,
    DEFAULT_FANS,
    FAN_WIDTH_EXPONENT,
    MAIN_AXES,
    ROLES,
    compress_roles,
)

_INIT_TARGET = {"input": Fraction(0), "vector": Fraction(0), "hidden": Fraction(1, 2), "output": Fraction(1, 2)}
_UPDATE_TARGET = {"input": Fraction(0), "vector": Fraction(0), "hidden": Fraction(1), "output": Fraction(1)}
_SGD_UPDATE_TARGET = {"input": Fraction(-1), "vector": Fraction(-1), "hidden": Fraction(0), "output": Fraction(1)}


def _update_growth(ir: ParameterisationIR, role: str, cls: str, a_: Fraction, c_: Fraction):
    """(u, needed lr width exponent, label) of a role's update under its optimizer's theory: u is the width
    exponent by which the update outgrows its target."""
    theory = optimizer_of(ir.optimizer(role)).theory
    if theory == "sgd":
        # a vector whose size does not grow with width (QK-norm gains: d_head entries) takes Theta(1) SGD steps
        target = Fraction(0) if cls == "vector" and DEFAULT_FANS[role][1][1] == 0 else _SGD_UPDATE_TARGET[cls]
        return target - (2 * a_ + c_), 2 * a_ - target, f"2a+c = {_f(2 * a_ + c_)}"
    if theory == "spectral":
        adj = ADJUST_LR_WIDTH_EXPONENT[ir.settings[role].get("adjust_lr", "original")]
        fan_in, fan_out = FAN_WIDTH_EXPONENT[cls]
        target = Fraction(fan_out - fan_in, 2)  # sqrt(fan_out / fan_in)
        got = -a_ - c_ + adj
        return got - target, a_ - adj + target, f"spectral norm of the update ~ width^{_f(got)}"
    return _UPDATE_TARGET[cls] - (a_ + c_), -(_UPDATE_TARGET[cls] - a_), f"a+c = {_f(a_ + c_)}"


@dataclass(frozen=True)
class Verdict:
    area: str  # width | depth | batch | duration | eps | weight_decay
    name: str
    passed: bool | None  # None: not applicable / cannot tell (not a power law)
    message: str


@dataclass
class Desiderata:
    name: str
    verdicts: list[Verdict] = field(default_factory=list)
    width_class: str = ""
    depth_class: str = ""
    r: Fraction | None = None

    def failed(self, area: str | None = None) -> list[Verdict]:
        return [v for v in self.verdicts if v.passed is False and (area is None or v.area == area)]

    def passes(self, area: str) -> bool:
        vs = [v for v in self.verdicts if v.area == area and v.passed is not None]
        return bool(vs) and all(v.passed for v in vs)


def _params(ir: ParameterisationIR) -> dict:
    return {k: q.value for k, q in ir.params.items()}


def exps(ir: ParameterisationIR, expr: sympy.Expr) -> dict[str, Fraction | None] | None:
    """Exponents of an expression over all axes, params evaluated; None if not a power law."""
    e = monomial_exponents(expr)
    if e is None:
        return None
    return {a: to_fraction(v, _params(ir)) for a, v in e.items()}


def role_exps(ir: ParameterisationIR, role: str, kind: str) -> dict[str, Fraction | None] | None:
    if kind == "mult":
        return exps(ir, effective_mult(ir, role))
    if kind not in ir.roles[role]:
        return None
    expr = per_role(ir.roles[role][kind].expr, role)
    if kind in ("beta1", "beta2", "momentum"):
        expr = one_minus(expr)
    return exps(ir, expr)


def _f(x: Fraction | None) -> str:
    return fmt_fraction(x)


def _width(ir: ParameterisationIR, d: Desiderata) -> None:
    us: dict[str, Fraction] = {}
    for role, cls in ROLES.items():
        m, b, c = (role_exps(ir, role, k) for k in ("mult", "init_std", "lr"))
        if m is None or b is None or c is None:
            d.verdicts.append(Verdict("width", f"{role} abc", None, f"{role}: not a power law in m_N"))
            continue
        zero_init = ir.roles[role]["init_std"].expr == 0
        a_, b_, c_ = -m["n"], -b["n"], -c["n"]
        # init: output size ~ n^(target - (a+b)) must not grow (output) / stay Theta(1) (others)
        if not zero_init:
            init = a_ + b_
            ok = init >= _INIT_TARGET[cls] if cls == "output" else init == _INIT_TARGET[cls]
            grow = _INIT_TARGET[cls] - init
            msg = f"{role} init: a+b = {_f(init)} (needs {'>=' if cls == 'output' else '='} {_f(_INIT_TARGET[cls])})"
            if not ok:
                msg += f"; at init its output {'grows' if grow > 0 else 'shrinks'} as width^{_f(abs(grow))}"
            d.verdicts.append(Verdict("width", f"{role} init", ok, msg))
        u, need, what = _update_growth(ir, role, cls, a_, c_)
        us[role] = u
        ok = u == 0
        opt = ir.optimizer(role)
        if ok:
            msg = f"{role} update ({opt}): {what}, Theta(1) feature updates"
        else:
            msg = (
                f"{role} {opt} lr width exponent {_f(c['n'])}: updates {'grow' if u > 0 else 'vanish'} as "
                f"width^{_f(u)}; needs {_f(need)}"
            )
        d.verdicts.append(Verdict("width", f"{role} update", ok, msg))
    if us:
        d.r = min(-u for u in us.values())
    failed = d.failed("width")
    if not failed:
        d.width_class = "muP-like (stable, maximal updates)"
    elif any(u > 0 for u in us.values()):
        d.width_class = "SP-like (unstable: updates grow with width)"
    elif d.r is not None and d.r > 0:
        d.width_class = f"NTK-like (lazy: r = {_f(d.r)})"
    else:
        d.width_class = "mixed (see failed checks)"


def _depth(ir: ParameterisationIR, d: Desiderata) -> None:
    res = [exps(ir, ir.sites[s].expr) for s in ("residual.attn", "residual.mlp")]
    if any(r is None for r in res) or res[0]["L"] != res[1]["L"]:
        d.verdicts.append(Verdict("depth", "residual", None, "residual multipliers are not one power law in m_L"))
        d.depth_class = "unknown"
        return
    alpha = -res[0]["L"]
    if alpha == 0:
        d.verdicts.append(
            Verdict(
                "depth",
                "residual",
                False,
                "residual branches unscaled (m_L^0): the residual stream grows with depth; "
                "needs m_L^-alpha with 1/2 <= alpha <= 1",
            )
        )
        d.depth_class = "no depth scaling"
        return
    stable = Fraction(1, 2) <= alpha <= 1
    d.verdicts.append(
        Verdict(
            "depth",
            "residual",
            stable,
            f"residual multiplier m_L^{_f(-alpha)}: "
            + ("stable at init (1/2 <= alpha <= 1)" if stable else "alpha outside [1/2, 1]"),
        )
    )
    for role in sorted(BLOCK_ROLES):
        lr = role_exps(ir, role, "lr")
        if role == "qk_norm" and lr is not None and lr["L"] == 0:
            continue  # CompleteP states no QK-norm rule
        if lr is None or ir.optimizer(role) == "sgd":
            continue  # CompleteP's depth rules are for scale-invariant updates (Adam; Muon likewise)
        ok = lr["L"] == alpha - 1
        d.verdicts.append(
            Verdict(
                "depth",
                f"{role} lr",
                ok,
                f"{role} lr depth exponent {_f(lr['L'])}" + ("" if ok else f"; needs alpha-1 = {_f(alpha - 1)}"),
            )
        )
    for role in sorted(r for r in BLOCK_ROLES if ROLES[r] == "hidden"):
        if ir.optimizer(role) != "adamw":
            continue  # Muon's eps only guards the orthogonalisation; SGD has none
        eps = role_exps(ir, role, "eps")
        if eps is None:
            continue
        ok = eps["L"] == -alpha
        d.verdicts.append(
            Verdict(
                "depth",
                f"{role} eps",
                ok,
                f"{role} eps depth exponent {_f(eps['L'])}"
                + ("" if ok else f"; residual-block eps needs -alpha = {_f(-alpha)}"),
            )
        )
    ok = not d.failed("depth")
    if alpha == 1:
        d.depth_class = "CompleteP (alpha=1): complete feature learning" if ok else "alpha=1 but incomplete rules"
    elif alpha == Fraction(1, 2):
        d.depth_class = "depth-muP (alpha=1/2): stable, lazy blocks" if ok else "alpha=1/2 but incomplete rules"
    else:
        d.depth_class = f"alpha={_f(alpha)}: stable, not complete" if ok else f"alpha={_f(alpha)} (see failures)"


def _batch_duration(ir: ParameterisationIR, d: Desiderata) -> None:
    lrs = [role_exps(ir, r, "lr") for r in ROLES if ir.optimizer(r) == "adamw"]
    if not lrs or any(e is None for e in lrs):
        return  # the square-root rule and the AdamW timescale are Adam's; no SGD/Muon batch theory here
    lr_b = {e["B"] for e in lrs}
    lr_d = {e["D"] for e in lrs}
    if lr_b == {0} and lr_d == {0}:
        d.verdicts.append(
            Verdict(
                "batch",
                "square-root rule",
                False,
                "no batch scaling: lr, 1-beta and eps fixed when the batch grows; "
                "Malladi's square-root rule needs lr m_B^1/2, 1-beta m_B^1, eps m_B^-1/2",
            )
        )
        d.verdicts.append(
            Verdict(
                "duration",
                "tau invariant",
                False,
                "no duration scaling: the AdamW timescale tau/T = B/(lr*wd*D) changes with D",
            )
        )
        return
    for role in ROLES:
        if ir.optimizer(role) != "adamw":
            continue  # the square-root rule and the beta half-life are Adam's
        lr, eps, b1, b2, wd = (role_exps(ir, role, k) for k in ("lr", "eps", "beta1", "beta2", "weight_decay"))
        if None in (lr, eps, b1, b2, wd):
            continue
        ok = lr["B"] == Fraction(1, 2) and eps["B"] == Fraction(-1, 2) and b1["B"] == 1 and b2["B"] == 1
        d.verdicts.append(
            Verdict(
                "batch",
                f"{role} sqrt rule",
                ok,
                f"{role}: lr m_B^{_f(lr['B'])}, eps m_B^{_f(eps['B'])}, 1-beta m_B^{_f(b1['B'])}"
                + ("" if ok else " (square-root rule: 1/2, -1/2, 1)"),
            )
        )
        # tau_epoch = B / (lr * wd * D): exponents of m_B and m_D must vanish.
        tb, td = 1 - lr["B"] - wd["B"], -1 - lr["D"] - wd["D"]
        ok = tb == 0 and td == 0
        d.verdicts.append(
            Verdict(
                "duration",
                f"{role} tau",
                ok,
                f"{role}: tau/T = B/(lr*wd*D) scales as m_B^{_f(tb)} m_D^{_f(td)}" + ("" if ok else " (needs 0, 0)"),
            )
        )
        half_tokens = b2["B"] == 1 and b2["D"] == 0
        half_frac = b2["B"] == 1 and b2["D"] == -1
        d.verdicts.append(
            Verdict(
                "duration",
                f"{role} beta2 half-life",
                half_tokens or half_frac,
                f"{role}: beta2 half-life fixed "
                + (
                    "in tokens (Marek et al.)"
                    if half_tokens
                    else "as a fraction of training"
                    if half_frac
                    else f"in neither (1-beta2 m_B^{_f(b2['B'])} m_D^{_f(b2['D'])})"
                ),
            )
        )


def _eps_and_wd(ir: ParameterisationIR, d: Desiderata) -> None:
    for role in ROLES:
        lr, wd = role_exps(ir, role, "lr"), role_exps(ir, role, "weight_decay")
        if lr is None or wd is None:
            continue
        if ir.decay(role) == "independent":
            ok = wd["n"] == 0
            d.verdicts.append(
                Verdict(
                    "weight_decay",
                    f"{role} lr*wd",
                    ok,
                    f"{role}: independent decay, shrink wd width exponent {_f(wd['n'])}"
                    + ("" if ok else " (the per-step shrink should be width-free)"),
                )
            )
            continue
        ok = lr["n"] + wd["n"] == 0
        d.verdicts.append(
            Verdict(
                "weight_decay",
                f"{role} lr*wd",
                ok,
                f"{role}: lr*wd width exponent {_f(lr['n'] + wd['n'])}"
                + ("" if ok else " (coupled decay should keep lr*wd width-free)"),
            )
        )
    # eps tracks the gradient in muP-like nets: gradient of a block/embedding tensor ~ mult * n^-1 (the
    # readout's 1/n reaches every hidden gradient) and ~ m_L^-alpha inside residual blocks.
    if not d.width_class.startswith("muP"):
        return
    res = exps(ir, ir.sites["residual.attn"].expr)
    for role in ("embed", "attn.q", "mlp.up", "norm"):
        if ir.optimizer(role) != "adamw":
            continue  # eps tracks the gradient only in Adam's denominator
        eps, m = role_exps(ir, role, "eps"), role_exps(ir, role, "mult")
        if eps is None or m is None or res is None:
            continue
        want_n = m["n"] - 1
        want_l = res["L"] if role in BLOCK_ROLES else 0
        ok = eps["n"] == want_n and eps["L"] == want_l
        d.verdicts.append(
            Verdict(
                "eps",
                f"{role} eps",
                ok,
                f"{role}: eps m_N^{_f(eps['n'])} m_L^{_f(eps['L'])}; gradient scale "
                f"m_N^{_f(want_n)} m_L^{_f(want_l)}" + ("" if ok else " (eps does not track the gradient)"),
            )
        )


def desiderata(ir_or_p) -> Desiderata:
    """All verdicts for one parameterisation (an IR or a loaded Parameterisation)."""
    ir = getattr(ir_or_p, "ir", ir_or_p)
    d = Desiderata(ir.name)
    _width(ir, d)
    _depth(ir, d)
    _batch_duration(ir, d)
    _eps_and_wd(ir, d)
    return d


# ---- equivalence modulo each optimizer's abc-symmetry -----------------------------------------------
# theta' = c*theta with mult' = mult/c leaves training unchanged when init' = c*init and the optimizer's own shifts
# hold (compiler/optimizers.py): AdamW and Muon lr' = c*lr, eps' = eps/c, coupled wd' = wd/c; SGD lr' = c^2*lr,
# coupled wd' = wd/c^2.  In exponents (per role, per axis): kind shifts by symmetry[kind] * k.  Weight decay is
# compared in the coupled convention (independent wd / lr), Muon's lr with its adjust_lr_fn's width exponent.
_SHIFT = {"mult": -1, "init_std": 1, "lr": 1, "eps": -1, "weight_decay": -1}
_EXACT_KINDS = ("beta1", "beta2", "momentum", "ns_steps", "init_mean")


@dataclass
class Equivalence:
    a: str
    b: str
    equivalent: bool
    differences: list[str] = field(default_factory=list)
    up_to_eps: bool = False


def _pow(axis: str, e) -> str:
    return "1" if e == 0 else f"{AXES[axis]}^{_f(e)}"


def _symmetry_exps(ir: ParameterisationIR, role: str, kinds) -> dict[str, dict | None]:
    out = {}
    for kind in kinds:
        if kind == "weight_decay" and ir.decay(role) == "independent":
            out[kind] = exps(ir, per_role(ir.roles[role]["weight_decay"].expr / ir.roles[role]["lr"].expr, role))
            continue
        out[kind] = role_exps(ir, role, kind)
        if kind == "lr" and out[kind] is not None and ir.optimizer(role) == "muon":
            adj = ADJUST_LR_WIDTH_EXPONENT[ir.settings[role].get("adjust_lr", "original")]
            out[kind] = {**out[kind], "n": out[kind]["n"] + adj}
    return out


def equivalence(p, q) -> Equivalence:
    """Are two parameterisations the same training dynamics up to each role's optimizer's abc-symmetry?

    Differences come one line per (axis, mismatch), roles that mismatch the same way merged, each relative to `p`:
    "hidden roles along m_N: lr x m_N^-1, so the symmetry needs init_std x m_N^-1 (has m_N^-1/2), ..."."""
    a, b = getattr(p, "ir", p), getattr(q, "ir", q)
    grouped: dict[str, list[str]] = {}
    eps_only = True

    def note(role: str, text: str) -> None:
        grouped.setdefault(text, []).append(role)

    for role in ROLES:
        if a.optimizer(role) != b.optimizer(role):
            note(role, f"optimizer: {a.optimizer(role)} vs {b.optimizer(role)} (no symmetry relates them)")
            eps_only = False
            continue
        opt = optimizer_of(a.optimizer(role))
        shift = {k: int(v) for k, v in (opt.symmetry or {}).items()}
        if not shift:
            note(role, f"{opt.name} has no abc-symmetry: compared as written")
        kinds = [k for k in ("mult", "init_std", "lr", "eps", "weight_decay") if k in a.roles[role]]
        ea, eb = _symmetry_exps(a, role, kinds), _symmetry_exps(b, role, kinds)
        if any(v is None for v in list(ea.values()) + list(eb.values())):
            note(role, "not a power law, cannot compare")
            continue
        for axis in MAIN_AXES:
            k = Fraction(eb["lr"][axis] - ea["lr"][axis], shift.get("lr", 1))
            bad = []
            for kind in kinds:
                if kind == "lr":
                    continue
                sign = shift.get(kind, 0)
                got = eb[kind][axis] - ea[kind][axis]
                if got != sign * k:
                    bad.append(f"{kind} x {_pow(axis, sign * k)} (has {_pow(axis, got)})")
                    eps_only &= kind == "eps"
            if bad:
                lr_shift = _pow(axis, shift.get("lr", 1) * k)
                note(role, f"along {AXES[axis]}: lr x {lr_shift}, so the symmetry needs " + ", ".join(bad))
        for kind in _EXACT_KINDS:
            ra, rb = a.roles[role].get(kind), b.roles[role].get(kind)
            if ra is None and rb is None:
                continue
            if ra is None or rb is None or sympy.simplify(ra.expr - rb.expr) != 0:
                note(role, f"{kind}: {ra.expr if ra else '-'} vs {rb.expr if rb else '-'}")
                eps_only = False
        for name in sorted(set(a.settings.get(role, {})) - {"optimizer", "decay", "adjust_lr"}):
            if a.settings[role].get(name) != b.settings.get(role, {}).get(name):
                note(role, f"{name}: {a.settings[role].get(name)} vs {b.settings.get(role, {}).get(name)}")
                eps_only = False
    diffs = [f"{compress_roles(roles)} {text}" for text, roles in grouped.items()]
    for site in ("residual.attn", "residual.mlp", "attn.scale"):
        if sympy.simplify(a.sites[site].expr - b.sites[site].expr) != 0:
            diffs.append(f"site {site}: {a.sites[site].expr} vs {b.sites[site].expr}")
            eps_only = False
    return Equivalence(a.name, b.name, not diffs, diffs, up_to_eps=bool(diffs) and eps_only)
