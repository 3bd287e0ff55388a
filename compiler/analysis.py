"""Symbolic analysis behind `check`, `show` and `compare`: desiderata verdicts and abc-symmetry equivalence, each
role judged by the theory of its own optimizer (compiler/optimizers.py), each condition citing its source.

Width (abc-parameterisations): a = -exponent of a role's forward multiplier, b = of its init std, c = of its LR
(all in m_N).  Tensor Programs IV (Yang & Hu 2021, arXiv 2011.14522), Theorem 3.3, stability:
  at init           a+b = 0 (input, vector), 1/2 (hidden), >= 1/2 (readout);
  during training   features do not blow up (r >= 0), the readout's own update keeps logits O(1)
                    (SGD 2a+c >= 1, Adam a+c >= 1), and a_{L+1}+b_{L+1}+r >= 1 (the readout at init times the
                    feature change);
and Theorem 3.8: feature learning iff r = 0, so the readout needs a+b >= 1 (muP: init var 1/n^2 or multiplier 1/n;
muP takes the largest such init, a+b = 1, or zero).  Maximal updates per role (Tensor Programs V, Table 3):
  Adam (TP V Table 3; TP IVb, Yang & Littwin 2023, arXiv 2308.01814): a+c = 0 (input/vector), 1 (hidden, readout);
  SGD (TP V Table 3, SGD column):          2a+c = -1 (input/vector), 0 (hidden), 1 (readout), with the readout's
                                           weights in the backward pass (TP IV Definition 3.2's min(a+b, 2a+c));
  Muon (spectral condition, Yang-Simon-Bernstein 2023, arXiv 2310.17813, Condition 1): the update's spectral norm
                                           mult * lr * adjust(shape) ~ sqrt(fan_out/fan_in): -a-c+adj = target.
A role's update grows like n^u (u > 0 unstable, u < 0 lazy, u = 0 feature learning); r (TP IV) := min over the roles
that change the features (all but readouts) of -u.
Depth (CompleteP, Dey et al. 2025, arXiv 2505.01618, Sec. 3 desiderata and Table 1): residual multiplier
m_L^-alpha with 1/2 <= alpha <= 1; in-block Adam lr m_L^(alpha-1) (larger is unstable), in-block eps m_L^-alpha.
Batch and duration (Complete(d)P's SDE rules, Mlodozeniec et al. 2025, arXiv 2512.22382; Malladi et al. 2022,
arXiv 2205.10287; Wang & Aitchison 2024, arXiv 2405.13698; Marek et al. 2025, arXiv 2507.07101).
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
from scalec.compiler.vocabulary import AXES, FAN_WIDTH_EXPONENT, MAIN_AXES, compress_roles

# Sources of the conditions (each verdict names one).
TP4_STABLE = "TP IV Thm 3.3"  # Yang & Hu 2021, arXiv 2011.14522
TP4_FEATURES = "TP IV Thm 3.3 + 3.8 (r = 0)"
TP5_ADAM = "TP V Table 3 / TP IVb"  # Yang et al. 2022, arXiv 2203.03466; Yang & Littwin 2023, arXiv 2308.01814
TP5_SGD = "TP V Table 3 (SGD)"
SPECTRAL = "spectral condition (arXiv 2310.17813)"
COMPLETEP = "CompleteP desiderata (arXiv 2505.01618)"
SQRT_RULE = "SDE square-root rule (Malladi et al. 2022; Complete(d)P, arXiv 2512.22382)"
TIMESCALE = "AdamW timescale (Wang & Aitchison 2024; Complete(d)P)"
HALF_LIFE = "beta2 half-life (Marek et al. 2025; Complete(d)P)"
WD_WIDTH = "TP V Table 3 (coupled decay: lr*wd width-free)"
EPS_GRADIENT = "eps tracks the gradient (Complete(d)P Eq. 40)"

_INIT_TARGET = {"input": Fraction(0), "vector": Fraction(0), "hidden": Fraction(1, 2), "output": Fraction(1, 2)}
_UPDATE_TARGET = {"input": Fraction(0), "vector": Fraction(0), "hidden": Fraction(1), "output": Fraction(1)}
_SGD_UPDATE_TARGET = {"input": Fraction(-1), "vector": Fraction(-1), "hidden": Fraction(0), "output": Fraction(1)}


def _update_growth(ir: ParameterisationIR, role: str, cls: str, a_: Fraction, c_: Fraction):
    """(u, needed lr width exponent, label, source) of a role's update under its optimizer's theory: u is the width
    exponent by which the update outgrows its target (with a muP readout in the backward pass)."""
    theory = optimizer_of(ir.optimizer(role)).theory
    if theory == "sgd":
        # a vector whose size does not grow with width (QK-norm gains: d_head entries) takes Theta(1) SGD steps
        target = Fraction(0) if cls == "vector" and ir.fans(role)[1][1] == 0 else _SGD_UPDATE_TARGET[cls]
        got = 2 * a_ + c_
        return target - got, 2 * a_ - target, f"2a+c = {_f(got)}", TP5_SGD
    if theory == "spectral":
        adj = ADJUST_LR_WIDTH_EXPONENT[ir.settings[role].get("adjust_lr", "original")]
        fan_in, fan_out = FAN_WIDTH_EXPONENT[cls]
        target = Fraction(fan_out - fan_in, 2)  # sqrt(fan_out / fan_in)
        got = -a_ - c_ + adj
        return got - target, a_ - adj + target, f"spectral norm of the update ~ width^{_f(got)}", SPECTRAL
    return _UPDATE_TARGET[cls] - (a_ + c_), -(_UPDATE_TARGET[cls] - a_), f"a+c = {_f(a_ + c_)}", TP5_ADAM


@dataclass(frozen=True)
class Verdict:
    """One desideratum for one role (or the whole file): `passed` says the rule meets it exactly (maximal updates,
    the papers' exponents); `stable` (None: same as passed) says it at least keeps training stable.  `role`,
    `target`, `exponent`, `bound` and `source` name what an expectation line reports."""

    area: str  # width | depth | batch | duration | eps | weight_decay
    name: str
    passed: bool | None  # None: not applicable / cannot tell (not a power law)
    message: str
    stable: bool | None = None
    role: str = ""
    target: str = ""
    exponent: str = ""  # the measured quantity, e.g. "a+b = 1/2"
    bound: str = ""  # what the theory needs, e.g. ">= 1"
    source: str = ""

    @property
    def is_stable(self) -> bool | None:
        return self.passed if self.stable is None else self.stable


@dataclass
class Desiderata:
    name: str
    verdicts: list[Verdict] = field(default_factory=list)
    width_class: str = ""
    depth_class: str = ""
    r: Fraction | None = None
    alpha: Fraction | None = None  # the residual branches' depth exponent (m_L^-alpha), when one power law

    def failed(self, area: str | None = None) -> list[Verdict]:
        return [v for v in self.verdicts if v.passed is False and (area is None or v.area == area)]

    def passes(self, area: str) -> bool:
        vs = [v for v in self.verdicts if v.area == area and v.passed is not None]
        return bool(vs) and all(v.passed for v in vs)

    def failure_lines(self, areas: tuple[str, ...] | None = None) -> list[str]:
        """One line per failed check, roles failing the same way merged: 'width / attn.*, mlp.* update: ...'."""
        groups: dict[tuple[str, str, str], list[str]] = {}
        for v in self.verdicts:
            if v.passed is not False or (areas is not None and v.area not in areas):
                continue
            check = v.name[len(v.role) + 1 :] if v.role and v.name.startswith(v.role + " ") else v.name
            text = v.message
            for prefix in (f"{v.role}: ", f"{v.role} "):
                if v.role and text.startswith(prefix):
                    text = text[len(prefix) :]
                    break
            text += f" [{v.source}]" if v.source else ""
            groups.setdefault((v.area, check, text), []).append(v.role)
        return [
            f"{area} / {compress_roles(roles) + ' ' if any(roles) else ''}{check}: {text}"
            for (area, check, text), roles in groups.items()
        ]


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
    expr = per_role(ir.roles[role][kind].expr, role, ir.fans(role))
    if kind in ("beta1", "beta2", "momentum"):
        expr = one_minus(expr)
    return exps(ir, expr)


def _f(x: Fraction | None) -> str:
    return fmt_fraction(x)


@dataclass(frozen=True)
class _Abc:
    role: str
    cls: str
    a: Fraction
    b: Fraction | None  # None: zero init
    c: Fraction
    u: Fraction


def _width(ir: ParameterisationIR, d: Desiderata) -> None:
    """Per role, the init and update conditions (TP IV Thm 3.3, TP V Table 3); then r and the width class."""
    abcs: list[_Abc] = []
    for role in ir.roles:
        cls = ir.width_class(role)
        m, b, c = (role_exps(ir, role, k) for k in ("mult", "init_std", "lr"))
        if m is None or b is None or c is None:
            d.verdicts.append(Verdict("width", f"{role} abc", None, f"{role}: not a power law in m_N", role=role))
            continue
        zero_init = ir.roles[role]["init_std"].expr == 0
        a_, b_, c_ = -m["n"], -b["n"], -c["n"]
        if not zero_init:
            d.verdicts.append(_init_verdict(role, cls, a_ + b_))
        u, need, what, source = _update_growth(ir, role, cls, a_, c_)
        abcs.append(_Abc(role, cls, a_, None if zero_init else b_, c_, u))
        d.verdicts.append(_update_verdict(role, ir.optimizer(role), c["n"], u, need, what, source))
    _features(ir, d, abcs)
    _width_class(d, abcs)


def _init_verdict(role: str, cls: str, init: Fraction) -> Verdict:
    """TP IV Thm 3.3 (1): the output size at init ~ n^(target - (a+b)) is Theta(1) (readout: O(1))."""
    ok = init >= _INIT_TARGET[cls] if cls == "output" else init == _INIT_TARGET[cls]
    grow = _INIT_TARGET[cls] - init
    bound = f"{'>=' if cls == 'output' else '='} {_f(_INIT_TARGET[cls])}"
    msg = f"{role} init: a+b = {_f(init)} (needs {bound})"
    if not ok:
        msg += f"; at init its output {'grows' if grow > 0 else 'shrinks'} as width^{_f(abs(grow))}"
    return Verdict(
        "width",
        f"{role} init",
        ok,
        msg,
        role=role,
        target="init_std",
        exponent=f"a+b = {_f(init)}",
        bound=bound,
        source=TP4_STABLE,
    )


def _update_verdict(
    role: str, opt: str, lr_n: Fraction, u: Fraction, need: Fraction, what: str, source: str
) -> Verdict:
    """Maximal updates (TP V Table 3 / spectral condition): the update neither grows (u > 0) nor vanishes (u < 0)."""
    if u == 0:
        msg = f"{role} update ({opt}): {what}, Theta(1) feature updates"
    else:
        msg = (
            f"{role} {opt} lr width exponent {_f(lr_n)}: updates {'grow' if u > 0 else 'vanish'} as "
            f"width^{_f(u)}; needs {_f(need)}"
        )
    return Verdict(
        "width",
        f"{role} update",
        u == 0,
        msg,
        stable=u <= 0,
        role=role,
        target="lr",
        exponent=f"lr m_N^{_f(lr_n)}",
        bound=f"= {_f(need)}",
        source=source,
    )


def _features(ir: ParameterisationIR, d: Desiderata, abcs: list[_Abc]) -> None:
    """TP IV's r (how fast the features' updates vanish) and its readout condition a_{L+1}+b_{L+1}+r >= 1."""
    readouts = [x for x in abcs if x.cls == "output"]
    features = [x for x in abcs if x.cls != "output"]
    if not features:
        return
    # Under SGD the gradient reaching the features passes through the readout: TP IV Definition 3.2's
    # min(a+b, 2a+c) of the readout (1 under muP, which the per-role SGD targets assume).
    backward = min(
        (
            min(x.a + x.b, 2 * x.a + x.c) if x.b is not None else 2 * x.a + x.c
            for x in readouts
            if optimizer_of(ir.optimizer(x.role)).theory == "sgd"
        ),
        default=Fraction(1),
    )
    d.r = min(-x.u + ((backward - 1) if optimizer_of(ir.optimizer(x.role)).theory == "sgd" else 0) for x in features)
    for x in readouts:
        if x.b is None:
            continue  # zero init: a+b is infinite
        total = x.a + x.b + d.r
        stable = total >= 1
        msg = f"{x.role} init during training: a+b = {_f(x.a + x.b)}, r = {_f(d.r)}: a+b+r = {_f(total)} (needs >= 1"
        msg += "; muP takes = 1)" if stable else f"): logits grow as width^{_f(1 - total)} once the features move"
        d.verdicts.append(
            Verdict(
                "width",
                f"{x.role} init (training)",
                stable and x.a + x.b == 1,
                msg,
                stable=stable,
                role=x.role,
                target="init_std",
                exponent=f"a+b+r = {_f(total)}",
                bound=">= 1 (= 1 with r = 0)",
                source=TP4_FEATURES,
            )
        )


def _width_class(d: Desiderata, abcs: list[_Abc]) -> None:
    failed = d.failed("width")
    unstable = [v for v in d.verdicts if v.area == "width" and v.is_stable is False]
    if not failed:
        d.width_class = "muP-like (stable, maximal updates)"
    elif any(x.u > 0 for x in abcs):
        d.width_class = "SP-like (unstable: updates grow with width)"
    elif any(v.name.endswith("(training)") for v in unstable):
        d.width_class = "unstable (readout init too large for feature learning: a+b+r < 1)"
    elif unstable:
        d.width_class = "unstable at init (see failures)"
    elif d.r is not None and d.r > 0:
        d.width_class = f"NTK-like (lazy: r = {_f(d.r)})"
    else:
        d.width_class = "stable, not maximal (see failures)"


def _depth(ir: ParameterisationIR, d: Desiderata) -> None:
    """CompleteP's depth desiderata (arXiv 2505.01618, Sec. 3 and Table 1): the residual multiplier m_L^-alpha, then
    the in-block lr and eps; sets the depth class."""
    alpha = _residual(ir, d)
    if alpha is None:
        return
    blocks = ir.block_roles()
    _depth_lr(ir, d, blocks, alpha)
    _depth_eps(ir, d, blocks, alpha)
    ok = not d.failed("depth")
    if alpha == 1:
        d.depth_class = "CompleteP (alpha=1): complete feature learning" if ok else "alpha=1 but incomplete rules"
    elif alpha == Fraction(1, 2):
        d.depth_class = "depth-muP (alpha=1/2): stable, lazy blocks" if ok else "alpha=1/2 but incomplete rules"
    else:
        d.depth_class = f"alpha={_f(alpha)}: stable, not complete" if ok else f"alpha={_f(alpha)} (see failures)"


def _residual(ir: ParameterisationIR, d: Desiderata) -> Fraction | None:
    """The residual multiplier m_L^-alpha needs 1/2 <= alpha <= 1 (CompleteP Sec. 3).  Returns alpha, or None (and
    sets the depth class) when the rest of depth cannot be judged: not one power law, or unscaled branches."""
    res = [exps(ir, ir.sites[s].expr) for s in ("residual.attn", "residual.mlp")]
    if any(r is None for r in res) or res[0]["L"] != res[1]["L"]:
        d.verdicts.append(Verdict("depth", "residual", None, "residual multipliers are not one power law in m_L"))
        d.depth_class = "unknown"
        return None
    alpha = d.alpha = -res[0]["L"]
    need = "m_L^-alpha with 1/2 <= alpha <= 1"
    if alpha == 0:
        d.verdicts.append(
            Verdict(
                "depth",
                "residual",
                False,
                f"residual branches unscaled (m_L^0): the residual stream grows with depth; needs {need}",
                role="",
                target="site residual",
                exponent="m_L^0",
                bound="-alpha in [-1, -1/2]",
                source=COMPLETEP,
            )
        )
        d.depth_class = "no depth scaling"
        return None
    stable = Fraction(1, 2) <= alpha <= 1
    state = "stable at init (1/2 <= alpha <= 1)" if stable else f"alpha = {_f(alpha)} outside [1/2, 1]; needs {need}"
    d.verdicts.append(
        Verdict(
            "depth",
            "residual",
            stable,
            f"residual multiplier m_L^{_f(-alpha)}: " + state,
            role="",
            target="site residual",
            exponent=f"alpha = {_f(alpha)}",
            bound="in [1/2, 1]",
            source=COMPLETEP,
        )
    )
    return alpha


def _depth_lr(ir: ParameterisationIR, d: Desiderata, blocks: frozenset[str], alpha: Fraction) -> None:
    """In-block lr m_L^(alpha-1), larger is unstable (CompleteP Table 1); Adam and Muon, not SGD."""
    for role in sorted(blocks):
        lr = role_exps(ir, role, "lr")
        if ir.optimizer(role) == "sgd":
            continue  # CompleteP's depth rules are for scale-invariant updates (Adam; Muon likewise)
        if lr is None:
            d.verdicts.append(Verdict("depth", f"{role} lr", None, f"{role} lr: not a power law in m_L", role=role))
            continue
        ok = lr["L"] == alpha - 1
        d.verdicts.append(
            Verdict(
                "depth",
                f"{role} lr",
                ok,
                f"{role} lr depth exponent {_f(lr['L'])}" + ("" if ok else f"; needs alpha-1 = {_f(alpha - 1)}"),
                stable=lr["L"] <= alpha - 1,
                role=role,
                target="lr",
                exponent=f"m_L^{_f(lr['L'])}",
                bound=f"= alpha-1 = {_f(alpha - 1)}",
                source=COMPLETEP,
            )
        )


def _depth_eps(ir: ParameterisationIR, d: Desiderata, blocks: frozenset[str], alpha: Fraction) -> None:
    """In-block AdamW eps m_L^-alpha (Complete(d)P Table 1: hidden weights, biases, norms and QK-norm gains)."""
    for role in sorted(blocks):
        if ir.optimizer(role) != "adamw":
            continue  # Muon's eps only guards the orthogonalisation; SGD has none
        eps = role_exps(ir, role, "eps")
        if eps is None:
            d.verdicts.append(Verdict("depth", f"{role} eps", None, f"{role} eps: not a power law in m_L", role=role))
            continue
        ok = eps["L"] == -alpha
        d.verdicts.append(
            Verdict(
                "depth",
                f"{role} eps",
                ok,
                f"{role} eps depth exponent {_f(eps['L'])}"
                + ("" if ok else f"; residual-block eps needs -alpha = {_f(-alpha)}"),
                stable=eps["L"] <= -alpha,
                role=role,
                target="eps",
                exponent=f"m_L^{_f(eps['L'])}",
                bound=f"= -alpha = {_f(-alpha)}",
                source=COMPLETEP,
            )
        )


def _batch_duration(ir: ParameterisationIR, d: Desiderata) -> None:
    """Complete(d)P's SDE rules per AdamW role (arXiv 2512.22382): the square-root rule in batch and duration, the
    AdamW timescale and the beta half-lives; one verdict pair when nothing scales."""
    lrs = [role_exps(ir, r, "lr") for r in ir.roles if ir.optimizer(r) == "adamw"]
    if not lrs or any(e is None for e in lrs):
        return  # the square-root rule and the AdamW timescale are Adam's; no SGD/Muon batch theory here
    lr_b = {e["B"] for e in lrs}
    lr_d = {e["D"] for e in lrs}
    if lr_b == {0} and lr_d == {0}:
        _no_sde_scaling(d)
        return
    for role in ir.roles:
        if ir.optimizer(role) != "adamw":
            continue  # the square-root rule and the beta half-life are Adam's
        lr, eps, b1, b2, wd = (role_exps(ir, role, k) for k in ("lr", "eps", "beta1", "beta2", "weight_decay"))
        if None in (lr, eps, b1, b2, wd):
            for area in ("batch", "duration"):
                d.verdicts.append(
                    Verdict(area, f"{role} SDE rules", None, f"{role}: not a power law in m_B, m_D", role=role)
                )
            continue
        _sqrt_rule_batch(d, role, lr, eps, b1, b2)
        _sqrt_rule_duration(d, role, lr, eps)
        _timescale(d, role, lr, wd)
        _half_lives(d, role, b1, b2)


def _no_sde_scaling(d: Desiderata) -> None:
    """No AdamW lr scales with batch or duration: the square-root rule and the timescale both fail, once each."""
    d.verdicts.append(
        Verdict(
            "batch",
            "square-root rule",
            False,
            "no batch scaling: lr, 1-beta and eps fixed when the batch grows; "
            "Malladi's square-root rule needs lr m_B^1/2, 1-beta m_B^1, eps m_B^-1/2",
            role="",
            target="lr",
            exponent="m_B^0",
            bound="= 1/2",
            source=SQRT_RULE,
        )
    )
    d.verdicts.append(
        Verdict(
            "duration",
            "tau invariant",
            False,
            "no duration scaling: the AdamW timescale tau/T = B/(lr*wd*D) changes with D",
            role="",
            target="lr*wd",
            exponent="m_D^0",
            bound="= -1",
            source=TIMESCALE,
        )
    )


def _sqrt_rule_batch(d: Desiderata, role: str, lr: dict, eps: dict, b1: dict, b2: dict) -> None:
    """Malladi et al.'s square-root rule in batch: lr m_B^1/2, eps m_B^-1/2, 1-beta m_B^1."""
    wants = [("lr", lr, Fraction(1, 2)), ("eps", eps, Fraction(-1, 2)), ("1-beta1", b1, 1), ("1-beta2", b2, 1)]
    shown = f"lr m_B^{_f(lr['B'])}, eps m_B^{_f(eps['B'])}, 1-beta m_B^{_f(b1['B'])}"
    _sqrt_rule(d, "batch", role, "B", wants, shown, " (square-root rule: 1/2, -1/2, 1)")


def _sqrt_rule_duration(d: Desiderata, role: str, lr: dict, eps: dict) -> None:
    """Complete(d)P extends the square-root rule to duration: lr m_D^-1/2, eps m_D^1/2."""
    wants = [("lr", lr, Fraction(-1, 2)), ("eps", eps, Fraction(1, 2))]
    shown = f"lr m_D^{_f(lr['D'])}, eps m_D^{_f(eps['D'])}"
    _sqrt_rule(d, "duration", role, "D", wants, shown, " (needs -1/2, 1/2)")


def _sqrt_rule(d: Desiderata, area: str, role: str, axis: str, wants: list, shown: str, hint: str) -> None:
    """One square-root-rule verdict on `axis`: each (name, exponents, wanted) in `wants` must scale as wanted;
    the text shows `shown`, and `hint` when any does not."""
    bad = [(k, e[axis], w) for k, e, w in wants if e[axis] != w]
    d.verdicts.append(
        Verdict(
            area,
            f"{role} sqrt rule",
            not bad,
            f"{role}: {shown}" + ("" if not bad else hint),
            role=role,
            target=", ".join(k for k, _, _ in bad),
            exponent=", ".join(f"m_{axis}^{_f(g)}" for _, g, _ in bad),
            bound=", ".join(f"= {_f(Fraction(w))}" for _, _, w in bad),
            source=SQRT_RULE,
        )
    )


def _timescale(d: Desiderata, role: str, lr: dict, wd: dict) -> None:
    """The AdamW timescale (Wang & Aitchison 2024): tau_epoch = B / (lr * wd * D) free of m_B and m_D."""
    tb, td = 1 - lr["B"] - wd["B"], -1 - lr["D"] - wd["D"]
    ok = tb == 0 and td == 0
    d.verdicts.append(
        Verdict(
            "duration",
            f"{role} tau",
            ok,
            f"{role}: tau/T = B/(lr*wd*D) scales as m_B^{_f(tb)} m_D^{_f(td)}" + ("" if ok else " (needs 0, 0)"),
            role=role,
            target="lr*wd",
            exponent=f"tau/T m_B^{_f(tb)} m_D^{_f(td)}",
            bound="m_B^0 m_D^0",
            source=TIMESCALE,
        )
    )


def _half_lives(d: Desiderata, role: str, b1: dict, b2: dict) -> None:
    """Each beta's half-life fixed in tokens (Marek et al. 2025) or as a fraction of training (Complete(d)P)."""
    for name, b in (("beta1", b1), ("beta2", b2)):
        half_tokens = b["B"] == 1 and b["D"] == 0
        half_frac = b["B"] == 1 and b["D"] == -1
        fixed = "in tokens (Marek et al.)" if half_tokens else "as a fraction of training" if half_frac else ""
        d.verdicts.append(
            Verdict(
                "duration",
                f"{role} {name} half-life",
                bool(fixed),
                f"{role}: {name} half-life fixed "
                + (fixed or f"in neither (1-{name} m_B^{_f(b['B'])} m_D^{_f(b['D'])})"),
                role=role,
                target=f"1-{name}",
                exponent=f"m_B^{_f(b['B'])} m_D^{_f(b['D'])}",
                bound="m_B^1 m_D^0 or m_B^1 m_D^-1",
                source=HALF_LIFE,
            )
        )


def _weight_decay(ir: ParameterisationIR, d: Desiderata) -> None:
    """Width-free decay (TP V Table 3): coupled decay keeps lr*wd width-free, independent decay its wd."""
    for role in ir.roles:
        lr, wd = role_exps(ir, role, "lr"), role_exps(ir, role, "weight_decay")
        if lr is None or wd is None:
            continue
        if ir.decay(role) == "independent":
            got = wd["n"]
            what, why, exponent = "independent decay, shrink wd", "the per-step shrink should be width-free", ""
        else:
            got = lr["n"] + wd["n"]
            what, why, exponent = "lr*wd", "coupled decay should keep lr*wd width-free", "lr*wd "
        ok = got == 0
        d.verdicts.append(
            Verdict(
                "weight_decay",
                f"{role} lr*wd",
                ok,
                f"{role}: {what} width exponent {_f(got)}" + ("" if ok else f" ({why})"),
                role=role,
                target="weight_decay",
                exponent=f"{exponent}m_N^{_f(got)}",
                bound="= 0",
                source=WD_WIDTH,
            )
        )


def _eps(ir: ParameterisationIR, d: Desiderata) -> None:
    """eps tracks the gradient in muP-like nets (Complete(d)P Eq. 40): gradient of a block/embedding tensor ~ mult *
    n^-1 (the readout's 1/n reaches every hidden gradient) and ~ m_L^-alpha inside residual blocks.  Judged for the
    embedding and hidden matrices and the width-sized vectors inside blocks (the authorities disagree on the final
    norm and the readout; QK-norm gains are head-sized)."""
    if not d.width_class.startswith("muP"):
        return
    res = exps(ir, ir.sites["residual.attn"].expr)
    blocks = ir.block_roles()
    for role in ir.roles:
        cls = ir.width_class(role)
        judged = cls in ("input", "hidden") or (cls == "vector" and role in blocks and ir.fans(role)[1][1] == 1)
        if not judged or ir.optimizer(role) != "adamw":
            continue  # eps tracks the gradient only in Adam's denominator
        eps, m = role_exps(ir, role, "eps"), role_exps(ir, role, "mult")
        if eps is None or m is None or res is None:
            continue
        d.verdicts.append(_eps_verdict(role, eps, m["n"] - 1, res["L"] if role in blocks else 0))


def _eps_verdict(role: str, eps: dict, want_n: Fraction, want_l: Fraction) -> Verdict:
    """eps at the gradient's scale m_N^want_n m_L^want_l; `stable` (the `eps: bounded` level): eps outgrows the
    gradient in width by at most the mup package's constant eps does (m_N^1); beyond that Adam's denominator is eps
    and the update vanishes with width."""
    ok = eps["n"] == want_n and eps["L"] == want_l
    bounded = 0 <= eps["n"] - want_n <= 1
    return Verdict(
        "eps",
        f"{role} eps",
        ok,
        f"{role}: eps m_N^{_f(eps['n'])} m_L^{_f(eps['L'])}; gradient scale "
        f"m_N^{_f(want_n)} m_L^{_f(want_l)}"
        + ("" if ok else " (eps does not track the gradient)" if bounded else " (eps swamps the gradient)"),
        stable=bounded,
        role=role,
        target="eps",
        exponent=f"m_N^{_f(eps['n'])} m_L^{_f(eps['L'])}",
        bound=f"m_N^{_f(want_n)} m_L^{_f(want_l)} to track the gradient, at most m_N^{_f(want_n + 1)} to stay bounded",
        source=EPS_GRADIENT,
    )


# Exponents the theories fix at 0: the rows their tables leave unscaled.  (area, axis, source, kinds of every role,
# kinds of the roles outside the residual blocks, forward sites.)
_FIXED: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("width", "n", "TP V Table 3 (betas, residual branches width-free)", ("beta1", "beta2", "momentum"), (),
     ("residual.attn", "residual.mlp")),
    ("depth", "L", "Complete(d)P Table 1 (rows without m_L)", ("init_std", "mult", "weight_decay", "beta1", "beta2",
     "momentum"), ("lr", "eps"), ("output.mult", "embed.mult")),
    ("batch", "B", "Complete(d)P Table 1 (init and multipliers batch-free)", ("init_std", "mult"), (),
     ("residual.attn", "residual.mlp", "output.mult", "embed.mult")),
    ("duration", "D", "Complete(d)P Table 1 (init and multipliers duration-free)", ("init_std", "mult"), (),
     ("residual.attn", "residual.mlp", "output.mult", "embed.mult")),
)  # fmt: skip


def _fixed(ir: ParameterisationIR, d: Desiderata) -> None:
    """Every exponent a theory leaves unscaled must be 0: one failed verdict per break (none when all hold, so the
    tables of `compare` list only what fails)."""
    blocks = ir.block_roles()
    for area, axis, source, kinds, outside, sites in _FIXED:
        ratio = AXES[axis]
        broken = []
        for role in ir.roles:
            for kind in kinds + (outside if role not in blocks else ()):
                if kind not in ir.roles[role] or (kind in ("lr", "eps") and ir.optimizer(role) == "sgd"):
                    continue
                e = role_exps(ir, role, kind)
                if e is None or e[axis] != 0:
                    label = f"1-{kind}" if kind in ("beta1", "beta2", "momentum") else kind
                    got = "not a power law" if e is None else f"{ratio}^{_f(e[axis])}"
                    broken.append((role, label, got))
        for site in sites:
            e = exps(ir, ir.sites[site].expr)
            if e is None or e[axis] != 0:
                broken.append(("", f"site {site}", "not a power law" if e is None else f"{ratio}^{_f(e[axis])}"))
        for role, label, got in broken:
            what = f"{role + ' ' if role else ''}{label}"
            message = f"{what} scales as {got}; the theory leaves it unscaled in {ratio}"
            d.verdicts.append(
                Verdict(
                    area,
                    f"{what} {ratio}-free",
                    False,
                    message,
                    role=role,
                    target=label,
                    exponent=got,
                    bound=f"= {ratio}^0",
                    source=source,
                )
            )


def desiderata(ir_or_p) -> Desiderata:
    """All verdicts for one parameterisation (an IR or a loaded Parameterisation)."""
    ir = getattr(ir_or_p, "ir", ir_or_p)
    d = Desiderata(ir.name)
    _width(ir, d)
    _depth(ir, d)
    _batch_duration(ir, d)
    _weight_decay(ir, d)
    _eps(ir, d)
    _fixed(ir, d)
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
            out[kind] = exps(
                ir, per_role(ir.roles[role]["weight_decay"].expr / ir.roles[role]["lr"].expr, role, ir.fans(role))
            )
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
    for role in a.roles:
        texts, role_eps_only = _role_differences(a, b, role)
        for text in texts:
            grouped.setdefault(text, []).append(role)
        eps_only = eps_only and role_eps_only
    for role in b.roles:
        if role not in a.roles:
            grouped.setdefault(f"declared in {b.name} only", []).append(role)
            eps_only = False
    diffs = [f"{compress_roles(roles)} {text}" for text, roles in grouped.items()]
    for site in ("residual.attn", "residual.mlp", "attn.scale"):
        if sympy.simplify(a.sites[site].expr - b.sites[site].expr) != 0:
            diffs.append(f"site {site}: {a.sites[site].expr} vs {b.sites[site].expr}")
            eps_only = False
    return Equivalence(a.name, b.name, not diffs, diffs, up_to_eps=bool(diffs) and eps_only)


def _role_differences(a: ParameterisationIR, b: ParameterisationIR, role: str) -> tuple[list[str], bool]:
    """(how `role` of `a` differs from `b`'s, in order; whether only eps breaks the symmetry)."""
    if role not in b.roles:
        return [f"declared in {a.name} only"], False
    if a.optimizer(role) != b.optimizer(role):
        return [f"optimizer: {a.optimizer(role)} vs {b.optimizer(role)} (no symmetry relates them)"], False
    opt = optimizer_of(a.optimizer(role))
    shift = {k: int(v) for k, v in (opt.symmetry or {}).items()}
    texts = [] if shift else [f"{opt.name} has no abc-symmetry: compared as written"]
    kinds = [k for k in ("mult", "init_std", "lr", "eps", "weight_decay") if k in a.roles[role]]
    ea, eb = _symmetry_exps(a, role, kinds), _symmetry_exps(b, role, kinds)
    if any(v is None for v in list(ea.values()) + list(eb.values())):
        return texts + ["not a power law, cannot compare"], True
    eps_only = True
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
            texts.append(f"along {AXES[axis]}: lr x {lr_shift}, so the symmetry needs " + ", ".join(bad))
    exact = _exact_differences(a, b, role)
    return texts + exact, eps_only and not exact


def _exact_differences(a: ParameterisationIR, b: ParameterisationIR, role: str) -> list[str]:
    """What no abc-symmetry moves and must match as written: betas, momentum, ns_steps, init_mean, other settings."""
    texts = []
    for kind in _EXACT_KINDS:
        ra, rb = a.roles[role].get(kind), b.roles[role].get(kind)
        if ra is None and rb is None:
            continue
        if ra is None or rb is None or sympy.simplify(ra.expr - rb.expr) != 0:
            texts.append(f"{kind}: {ra.expr if ra else '-'} vs {rb.expr if rb else '-'}")
    for name in sorted(set(a.settings.get(role, {})) - {"optimizer", "decay", "adjust_lr"}):
        if a.settings[role].get(name) != b.settings.get(role, {}).get(name):
            texts.append(f"{name}: {a.settings[role].get(name)} vs {b.settings.get(role, {}).get(name)}")
    return texts
