"""The feasible region: where every role's hyperparameters and every forward site stay in their domains.

A monomial rule `C * prod m_a^e` is linear in log space, so a domain bound on it is one linear inequality in
(log m_N, log m_L, log m_B, log m_D, log m_H): kept as a Constraint when it cuts the axis box, and written in the
user's terms (Complete(d)P: `1-beta1 = 0.1 * S0/S <= 1`, i.e. steps S >= 102.4). Other expressions are decided by
compiler/box_analysis.py. A zero, pole or sign change that breaks a domain is an error naming the shape; what the
analysis cannot decide is a warning naming the expression, never a silent pass.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import sympy

from scalec.compiler import profile
from scalec.compiler.box_analysis import AXIS_OF, BoxAnalysis, Sign, enclosure_ok, ratio_monomial
from scalec.compiler.domain import Domain, domain_of
from scalec.compiler.ir import Constraint, Origin, ParameterisationIR, Rule
from scalec.compiler.printer import RulePrinter, field_name
from scalec.compiler.symbols import BASE, FAN_IN, FAN_OUT, LAYER, RATIO, RATIO_SYMBOLS, TENSOR, hp_symbol, param_symbol
from scalec.compiler.vocabulary import AXES, DEFAULT_FANS, compress_roles
from scalec.dsl.ast import Loc
from scalec.dsl.errors import RuleError

_ROLE_KINDS = ("init_mean", "init_std", "lr", "weight_decay", "beta1", "beta2", "eps", "momentum", "ns_steps", "mult")
_INV = {"<=": ">=", "<": ">", ">=": "<=", ">": "<"}
# Every run takes at least one optimizer step: D >= B, i.e. (1/S0) * m_B/m_D <= 1.
STEP_REASON = "a run takes at least one optimizer step"


@dataclass
class RegionReport:
    """What the analysis derived: the constraints beyond the box and the warnings (undecided, hp ranges)."""

    constraints: list[Constraint] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Derivation:
    """Every role's and site's rule against its domain: constraints, warnings, and errors naming the shape."""

    def __init__(self, ir: ParameterisationIR):
        self.ir = ir
        self.base = {BASE[a]: q.value for a, q in ir.axes.items()}
        self.params = {param_symbol(k): q.value for k, q in ir.params.items()}
        # hps, and each depth profile's block value (bounded by its declared range, default at the defaults)
        quantities = {**ir.hps, **{p.value_name: p.quantity for p in ir.profiles.values()}}
        hps = {hp_symbol(k, q.low): q for k, q in quantities.items()}
        self.defaults = {s: q.value for s, q in hps.items()}
        box = {}
        for a, q in ir.axes.items():
            lo, hi = (q.low, q.high) if q.low is not None else (q.value, q.value)
            box[RATIO[a]] = (sympy.Rational(lo) / q.value, sympy.Rational(hi) / q.value)
        self.box = BoxAnalysis(box, self.defaults, {s: (q.low, q.high) for s, q in hps.items()})
        self.profile_syms = {p.value_symbol for p in ir.profiles.values()}
        self.report = RegionReport()
        self.memo: dict = {}

    # ---- entry ------------------------------------------------------------------------------------
    def run(self) -> RegionReport:
        found: dict[tuple, Constraint] = {}
        subjects = [
            (f"{k} of role '{r}'", r, k, Rule(e, rule.origins))
            for r, rules in self.ir.roles.items()
            for k, rule in ((k, rules[k]) for k in _ROLE_KINDS if k in rules)  # each optimizer has its own targets
            for e in tensor_corners(rule.expr, r, self.ir.fans(r))
        ]
        subjects += [(f"site '{s}'", None, "site", rule) for s, rule in self.ir.sites.items()]
        fixed = self.params | self.base
        for what, role, kind, rule in subjects:
            key = (rule.expr, kind)  # many roles share one expression: analyse each once
            if key not in self.memo:
                self.memo[key] = self.conditions(rule.expr.xreplace(fixed), domain_of(kind))
            for cond in self.memo[key]:
                if isinstance(cond, Constraint) and cond.coefficient.free_symbols & self.profile_syms:
                    raise error_at(
                        self.ir,
                        rule.origins,
                        f"{what} is bounded ({cond.reason}) through a depth profile: the shapes allowed would differ "
                        "per block",
                        "use depth profiles on lr, init_std, weight_decay or eps, where any positive value is valid",
                    )
                if isinstance(cond, Constraint):
                    k = (cond.subject, cond.coefficient, cond.exponents, cond.op, cond.limit)
                    prev = found.get(k)
                    roles = (prev.roles if prev else ()) + ((role,) if role else ())
                    origins = tuple(dict.fromkeys((prev.origins if prev else ()) + rule.origins[-1:]))
                    found[k] = Constraint(*k[:4], cond.limit, cond.reason, roles, origins)
                else:
                    self.fail(what, kind, rule.origins, cond)
        found_list = list(found.values())
        step = self.step_constraint()
        if step is not None:
            found_list.append(step)
        self.report.constraints = found_list
        return self.report

    def step_constraint(self) -> Constraint | None:
        s0 = self.base[BASE["D"]] / self.base[BASE["B"]]
        c = Constraint("1/S", 1 / s0, (("B", sympy.Integer(1)), ("D", sympy.Integer(-1))), "<=", 1, STEP_REASON)
        if self.cuts_box(c, self.defaults):
            return c
        return None

    # ---- one expression against one domain --------------------------------------------------------
    def conditions(self, expr: sympy.Expr, dom: Domain) -> list:
        """Constraints the domain puts on `expr` (a list of Constraint) and failures (tuples) found."""
        out: list = []
        sides = []
        if dom.low is not None:
            sides.append((sympy.Rational(dom.low), dom.low_strict, "low"))
        if dom.high is not None:
            sides.append((sympy.Rational(dom.high), dom.high_strict, "high"))
        for bound, strict, side in sides:
            out.extend(self.side(expr, dom, bound, strict, side))
        if dom.nonzero or not sides:
            mono = self.box.monomial(expr)
            if mono is not None:
                coef = mono[0]
                if dom.nonzero and self.box.at_defaults(coef) == 0:
                    out.append(("zero", None, sympy.Integer(0), dom))
            else:
                sign = self.sign(expr, None if not dom.nonzero else "nonzero", dom)
                if not sign.ok:
                    out.append(("sign", sign, expr, dom))
        return out

    def side(self, expr, dom: Domain, bound, strict: bool, side: str) -> list:
        """`expr >(=) bound` (side low) or `expr <(=) bound` (side high)."""
        gap = expr - bound if side == "low" else bound - expr  # must be > 0 (strict) or >= 0
        mono = self.box.monomial(gap)
        if mono is not None:  # the gap itself is a monomial: only its coefficient's sign matters
            return self.coefficient_sign(mono[0], strict, dom)
        other = dom.high if side == "low" else dom.low
        # expr (or other - expr, when the rule is written on 1-beta) is a monomial: a log-linear constraint.
        for flip in (False, True):
            if flip and other is None:
                continue
            subject = f"{_num(other)}-{dom.kind}" if flip else dom.kind
            value = sympy.Rational(other) - expr if flip else expr
            mono = self.box.monomial(value)
            if mono is None:
                continue
            coef, exps = mono
            # value op limit, with value = other - expr when flipped (bounds swap direction)
            if not flip:
                op, limit = (">" if strict else ">=", bound) if side == "low" else ("<" if strict else "<=", bound)
            else:
                limit = sympy.Rational(other) - bound
                op = ("<" if strict else "<=") if side == "low" else (">" if strict else ">=")
            if op in (">", ">=") and limit <= 0:
                return self.coefficient_sign(coef, op == ">", dom)
            fails = self.coefficient_sign(coef, True, dom)
            if fails:
                return fails
            c = Constraint(subject, coef, exps, op, sympy.Rational(limit), dom.text)
            if not self.holds_at_base(c, self.defaults):
                return [("base", None, expr, dom)]
            if not self.holds_at_base_over_hp_ranges(c):
                self.warn_hp(dom, f"{subject} = {_text(coef * ratio_monomial(exps))}", "at the base shape")
            return [c] if self.cuts_box(c, self.defaults) else []
        sign = self.sign(gap, "strict" if strict else "weak", dom)
        return [] if sign.ok else [("sign", sign, expr, dom)]

    def coefficient_sign(self, coef, strict: bool, dom: Domain) -> list:
        """A monomial's sign is its coefficient's: at the hp defaults (error) and over the hp ranges (warning)."""
        value = self.box.at_defaults(coef)
        if value.is_real is False or (value < 0 or (strict and value == 0)):
            return [("coef", None, value, dom)]
        enc = self.box.enclose(coef, hp_ranges=True)
        if enc is None or enc.a < 0 or (strict and enc.a <= 0):
            self.warn_hp(dom, _text(coef), "over the hp search ranges")
        return []

    # ---- log-linear constraints -------------------------------------------------------------------
    def cuts_box(self, c: Constraint, hps) -> bool:
        """Does the constraint exclude part of the axis box (at these hp values)?"""
        lo, hi = self.box.log_range(c.exponents)
        coef = c.coefficient.subs(hps)
        worst = coef * (hi if c.op in ("<", "<=") else lo)
        return not bool(_compare(worst, c.op, c.limit))

    def holds_at_base(self, c: Constraint, hps) -> bool:
        return bool(_compare(c.coefficient.subs(hps), c.op, c.limit))

    def holds_at_base_over_hp_ranges(self, c: Constraint) -> bool:
        enc = self.box.enclose(c.coefficient, hp_ranges=True)
        if enc is None:
            return False
        lim = float(c.limit)
        return {"<=": enc.b <= lim, "<": enc.b < lim, ">=": enc.a >= lim, ">": enc.a > lim}[c.op]

    def warn_hp(self, dom: Domain, expr: str, where: str) -> None:
        text = f"{dom.text} may break {where}: {expr}; narrow the hp search range"
        if text not in self.report.warnings:
            self.report.warnings.append(text)

    # ---- signs of non-monomial expressions ---------------------------------------------------------
    def sign(self, g: sympy.Expr, strict: str | None, dom: Domain) -> Sign:
        """Prove `g > 0` (strict), `g >= 0` (weak), `g != 0` (nonzero) or finite (None) over the box at the hp
        defaults; otherwise return a witness or `undecided`. Over the hp ranges, failures become warnings."""
        result = self.box.sign(g.xreplace(self.defaults), strict)
        if result.ok and g.free_symbols & set(self.defaults):
            enc = self.box.enclose(g, hp_ranges=True)
            if not enclosure_ok(enc, strict):
                self.warn_hp(dom, _text(g), "over the hp search ranges")
        return result

    # ---- errors --------------------------------------------------------------------------------------
    def fail(self, what: str, kind: str, origins: tuple[Origin, ...], cond) -> None:
        tag, sign, value, dom = cond
        if tag == "sign" and sign.undecided:
            self.report.warnings.append(
                f"cannot decide whether {what} keeps {dom.text} over the axis box: {_text(value)}; "
                "check it by hand or write the rule as a product of powers"
            )
            return
        label = kind if kind != "site" else what.split("'")[1]
        if tag == "sign":
            shown = sign.value
            if not isinstance(shown, str):  # the HP's own value there (the analysis saw a gap to a bound)
                at = {r: 1 for r in value.free_symbols & RATIO_SYMBOLS} | sign.point  # other axes at the base
                shown = _fmt(value.xreplace(self.defaults).subs(at).evalf(30))
            msg = f"{what} leaves its domain ({dom.text}): {label} = {shown} at {self.where(sign.point)}"
            hint = "a zero, pole or sign change inside the axis box: rewrite the rule or narrow the axis ranges"
        elif tag == "base":
            msg = f"{what} leaves its domain ({dom.text}) at the base shape with the default hps"
            hint = "check the rule and the hp defaults"
        else:
            msg = f"{what} leaves its domain ({dom.text}): its coefficient is {_fmt(value)} at the hp defaults"
            hint = "check the rule's sign and the hp defaults"
        raise error_at(self.ir, origins, msg, hint)

    def where(self, point) -> str:
        if not point:
            return "every shape"
        order = list(AXES)
        point = dict(sorted(point.items(), key=lambda kv: order.index(AXIS_OF[kv[0]])))
        shape = ", ".join(
            f"{AXIS_OF[s]} = {_fmt(v * self.base[BASE[AXIS_OF[s]]], AXIS_OF[s])}" for s, v in point.items()
        )
        ratios = ", ".join(f"{s} = {_fmt(v, 'ratio')}" for s, v in point.items())
        return f"{shape} ({ratios})"


def tensor_corners(expr: sympy.Expr, role: str, fans: tuple | None = None) -> list[sympy.Expr]:
    """Per-tensor symbols made concrete: the bundled GPT's fans, depth profiles as their bounded values, and the
    first and the last block (l = 0 and l = L - 1), so the analyses over the axis box see only ratios, hps and
    params."""
    if not expr.free_symbols & TENSOR:
        return [expr]
    expr = profile.flatten(expr)  # a depth profile's value: positive, bounded by its range (the analysis knows it)
    (ci, ei), (co, eo) = DEFAULT_FANS[role] if fans is None else fans  # fans: ParameterisationIR.fans(role)
    n = BASE["n"] * RATIO["n"]
    out = expr.subs({FAN_IN: ci * n**ei, FAN_OUT: co * n**eo})
    if LAYER not in out.free_symbols:
        return [out]
    return [out.subs(LAYER, 0), out.subs(LAYER, BASE["L"] * RATIO["L"] - 1)]


def error_at(ir: ParameterisationIR, origins: tuple[Origin, ...], message: str, hint: str | None) -> RuleError:
    if origins:
        o = origins[-1]
        idx = ir.paths.index(o.path) if o.path in ir.paths else -1
        return RuleError(Loc(o.path, o.line, 1), message, hint, ir.sources[idx] if idx >= 0 else None)
    return RuleError(ir.header_loc or Loc(ir.paths[-1], 1, 1), message, hint, ir.sources[-1])


def _compare(x, op, y):
    return {"<=": x <= y, "<": x < y, ">=": x >= y, ">": x > y}[op]


def _fmt(v, axis: str = "") -> str:
    """A number for messages; token counts (B, D) that are powers of two as `2^k`."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if f > 0 and abs(math.log2(f) - round(math.log2(f))) < 1e-9:  # witness points found in log space
        f = 2.0 ** round(math.log2(f))
    if axis in ("B", "D") and f >= 256 and math.log2(f).is_integer():
        return f"2^{int(math.log2(f))}"
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.4g}"


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _text(e) -> str:
    return str(e).replace("**", "^")


# ---- the region in the user's terms -------------------------------------------------------------------------
@dataclass(frozen=True)
class UserForm:
    """A constraint as `quantity op bound`: quantity a monomial of absolute axes (S = D/B for steps)."""

    quantity: str  # "S" or "B" or "n^(1/2)*B/D"
    axes: dict[str, sympy.Rational]  # exponent of each absolute axis in the quantity
    op: str
    bound: sympy.Expr  # in hp symbols
    steps: bool
    why: str  # "1-beta1 = {c}*S0/S must stay <= 1"


def user_form(c: Constraint, ir: ParameterisationIR) -> UserForm:
    """`coef * prod (X/X0)^a op limit` rewritten as `Q op' bound` with Q a monomial of the axes."""
    a = dict(c.exponents)
    steps = set(a) == {"B", "D"} and a["B"] == -a["D"]
    g = -a["B"] if steps else (a[next(iter(a))] if len(a) == 1 else sympy.Integer(1))
    q_exps = {x: e / g for x, e in a.items()}
    base = {x: ir.axes[x].value for x in AXES}
    q0 = sympy.Mul(*(base[x] ** e for x, e in q_exps.items()))
    bound = q0 * (c.limit / c.coefficient) ** (1 / g)
    op = c.op if g > 0 else _INV[c.op]
    if steps:
        quantity = "S"
        mono = {-1: "S0/S", 1: "S/S0"}.get(g, f"(S/S0)^{_text(g)}")
    else:
        quantity = _text(sympy.Mul(*(sympy.Symbol(x, positive=True) ** e for x, e in q_exps.items())))
        mono = _text(ratio_monomial(c.exponents))
    if c.reason == STEP_REASON:
        why = STEP_REASON
    else:
        why = f"{c.subject} = {{c:.4g}}*{mono} must stay {c.op} {_num(c.limit)} ({c.reason})"
    return UserForm(quantity, q_exps, op, sympy.nsimplify(bound), steps, why)


def describe(c: Constraint, ir: ParameterisationIR) -> str:
    """One line for `scalec check` / `show`: `S = D/B >= 102.4  (0 <= beta1 < 1, all roles: 1-beta1 = ...)`."""
    form = user_form(c, ir)
    defaults = {hp_symbol(k, q.low): q.value for k, q in ir.hps.items()}
    bound = form.bound.subs(defaults)
    name = "S = D/B" if form.steps else form.quantity
    text = f"{name} {form.op} {float(bound):.4g}"
    if form.steps and form.op in (">=", ">"):
        least = math.floor(bound) + 1 if form.op == ">" else math.ceil(bound)
        text += f" (at least {least} optimizer step{'s' * (least != 1)})"
    why = form.why.format(c=float(c.coefficient.subs(defaults)))
    roles = f" for {compress_roles(c.roles)}" if c.roles else ""
    spread = ""
    hp_syms = sorted(form.bound.free_symbols, key=str)
    if hp_syms:
        corners = []
        for combo in itertools.product(*((ir.hps[str(s)].low, ir.hps[str(s)].high) for s in hp_syms)):
            corners.append(float(form.bound.subs(dict(zip(hp_syms, combo, strict=True)))))
        names = ", ".join(str(s) for s in hp_syms)
        spread = f"; {min(corners):.4g} to {max(corners):.4g} over the search range of {names}"
    return f"{text}: {why}{roles}{spread}"


def region_lines(ir: ParameterisationIR) -> list[str]:
    """The feasible region as `scalec check` / `show` print it: the axis box, then one line per constraint."""
    box = ", ".join(f"{a} in [{_fmt(q.low, a)}, {_fmt(q.high, a)}]" for a, q in ir.axes.items() if q.low is not None)
    return [f"axes {box}"] + [describe(c, ir) for c in ir.constraints]


def derive_region(ir: ParameterisationIR) -> RegionReport:
    """The feasible region's constraints (beyond the axis box) and the warnings; raises RuleError on a failure."""
    return _Derivation(ir).run()


def check_base_in_region(ir: ParameterisationIR, constraints) -> None:
    """The base shape must lie in the region (it can break only the structural step constraint)."""
    for c in constraints:
        defaults = {hp_symbol(k, q.low): q.value for k, q in ir.hps.items()}
        if not _compare(c.coefficient.subs(defaults), c.op, c.limit):
            form = user_form(c, ir)
            name = "S0 = D0/B0" if form.steps else form.quantity
            raise error_at(
                ir,
                (),
                f"the base shape lies outside the feasible region: it needs {name} {form.op} "
                f"{_fmt(form.bound.subs(defaults))} ({form.why.format(c=float(c.coefficient.subs(defaults)))})",
                "move the base inside the region (e.g. --base D=... with D >= B)",
            )


def code_view(ir: ParameterisationIR) -> list[dict]:
    """What the module template's check_shape block prints for each constraint (code as sympy printed it)."""
    names = {a: f"shape.{a}" for a in AXES} | {h: f"hp.{field_name(h)}" for h in ir.hps}
    printer = RulePrinter(names, {h: 0 for h in ir.hps} | {a: 1 + i for i, a in enumerate(AXES)})
    views = []
    for c in ir.constraints:
        form = user_form(c, ir)
        have = sympy.Mul(*(sympy.Symbol(a, positive=True) ** e for a, e in form.axes.items()))
        origins = [f"{o.short()} {o.text}" for o in c.origins] or [c.reason]
        views.append(
            dict(
                comments=origins,
                have=printer.doprint(have),
                op=form.op,
                need=printer.doprint(form.bound),
                coefficient=printer.doprint(c.coefficient),
                what="optimizer steps" if form.steps else form.quantity,
                why=form.why,
                axes=tuple(a for a in AXES if a in form.axes),
            )
        )
    return views


__all__ = [
    "derive_region",
    "describe",
    "user_form",
    "UserForm",
    "RegionReport",
    "check_base_in_region",
    "code_view",
    "region_lines",
]
