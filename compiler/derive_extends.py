"""`scalec derive --extends FILE`: derive the rules of the roles FILE declares (`new role NAME: KIND [in blocks]`).

The declared roles already carry default rules (compiler/declared_roles.py); the derived child states, per role and
target, only the factor that takes the resolved rule to the derived exponents, so the result is exact whatever the
defaults were.  Each factor's comment names the constraints that bind it; a role whose rule already satisfies the
desiderata is said to in a comment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import sympy

from scalec.compiler.derive import (
    AXIS_WORDS,
    EPS_POLICIES,
    GAUGES,
    TRANSFORMER_ROLES,
    Derivation,
    DeriveError,
    DeriveSpec,
    RoleExponents,
    RoleSpec,
    _monomial,
    derive,
)
from scalec.compiler.derive_emit import _assignments, _placement
from scalec.compiler.exponents import monomial_exponents, one_minus, per_role
from scalec.compiler.ir import ParameterisationIR
from scalec.compiler.pipeline import compile_ir
from scalec.version import __version__

_TARGET_OF = {
    "mult": "mult",
    "init_std": "init_std",
    "lr": "lr",
    "eps": "eps",
    "weight_decay": "weight_decay",
    "1-beta1": "beta1",
    "1-beta2": "beta2",
}


def declared_specs(ir: ParameterisationIR) -> list[RoleSpec]:
    """The roles a file (or its ancestors) declared, as derive's role specs."""
    out = []
    for name, info in ir.role_table.items():
        if info.declared is None:
            continue
        zero = name in ir.roles and "init_std" in ir.roles[name] and ir.roles[name]["init_std"].expr == 0
        out.append(RoleSpec(name, info.kind, info.in_blocks, zero_init=zero))
    return out


def derive_extends(parent: str | Path, spec: DeriveSpec) -> str:
    """The child rule file of `parent` with the derived rules of its declared roles, checked by the compiler."""
    ir, _ = compile_ir(parent)
    roles = declared_specs(ir)
    if not roles:
        raise DeriveError(
            f"error: derive --extends {parent}: the file declares no role; add `new role NAME: KIND [in blocks]`"
        )
    if "depth" in spec.axes:
        if "alpha" not in ir.params:
            raise DeriveError(
                f"error: derive --extends {parent}: --axes depth needs the file's depth exponent (a `param alpha`)"
            )
        q = ir.params["alpha"]
        lo = q.low if q.low is not None else q.value
        hi = q.high if q.high is not None else q.value
        spec = replace(spec, alpha=(sympy.Rational(lo), sympy.Rational(hi)))
    for r in roles:
        if ir.optimizer(r.name) not in ("adamw", "sgd", "muon"):
            raise DeriveError(f"error: derive: role {r.name}'s optimizer {ir.optimizer(r.name)} has no derivation")
    # The bundled roles stay in the LP as context (the readout's a+b+r >= 1 couples every role feeding it), each
    # with the parent's optimizer; only the declared roles are written.
    context = tuple(replace(r, optimizer=ir.optimizer(r.name)) for r in TRANSFORMER_ROLES if r.name in ir.roles)
    declared = tuple(replace(r, optimizer=ir.optimizer(r.name)) for r in roles)
    spec = replace(spec, roles=context + declared, extends=ir.name)
    d = derive(spec)
    d.roles = [re for re in d.roles if re.spec.name in {r.name for r in roles}]
    text = _render(ir, spec, d, Path(parent))
    child = Path(parent).with_name(f".{spec.name.lower()}.derive-check.scale")
    try:
        child.write_text(text)
        compile_ir(child)
    except OSError as exc:
        raise DeriveError(f"error: derive --extends {parent}: cannot check beside it ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - our own output failing the compiler is a bug, stated in one line
        raise DeriveError(f"error: derive produced a file that fails `scalec check` (a scalec bug): {exc}") from None
    finally:
        child.unlink(missing_ok=True)
    return text


def _current(ir: ParameterisationIR, role: str, kind: str) -> dict[str, sympy.Expr]:
    target = _TARGET_OF[kind]
    rule = ir.roles[role].get(target)
    if rule is None:
        return {}
    expr = per_role(rule.expr, role, ir.fans(role))
    if kind.startswith("1-"):
        expr = one_minus(expr)
    exps = monomial_exponents(expr)
    if exps is None:
        raise DeriveError(f"error: derive: role {role}'s {target} rule is not a power law in the ratios: {rule.expr}")
    return exps


def _factor(ir: ParameterisationIR, re: RoleExponents, kind: str, axes: set[str]) -> dict[str, sympy.Expr]:
    cur = _current(ir, re.spec.name, kind)
    want = re.exps.get(kind, {})
    out = {}
    for axis in axes:
        diff = sympy.expand(want.get(axis, 0) - cur.get(axis, 0))
        if diff != 0:
            out[axis] = diff
    return out


def _render(ir: ParameterisationIR, spec: DeriveSpec, d: Derivation, parent: Path) -> str:
    axes = {AXIS_WORDS[a] for a in spec.axes}
    if "n" in axes:
        axes.add("d_head")
    lines = [
        f"# Derived by `scalec derive --extends {_comment_safe(parent.name)} --axes {','.join(spec.axes)} "
        f"--gauge {spec.gauge} --eps {spec.eps} --decay {spec.decay}` (scalec {__version__}).",
        "# Each factor takes the declared role's rule in the parent to the exponents the desiderata give (exact",
        "# rational LPs, compiler/derive.py); its comment names the constraints that bind it.",
        f"# gauge {spec.gauge}: {GAUGES[spec.gauge]}",
        f"# eps {spec.eps}: {EPS_POLICIES[spec.eps]}",
        f"parameterisation {spec.name} extends {ir.name}",
        f'  "Derived rules for the roles {ir.name} declares: axes {", ".join(spec.axes)}; gauge {spec.gauge}."',
        '  cite "Yang & Hu 2021, Tensor Programs IV, arXiv 2011.14522, Theorem 3.3"',
        '  cite "Yang et al. 2022, Tensor Programs V, arXiv 2203.03466, Table 3"',
    ]
    for re in d.roles:
        values: dict[str, str] = {}
        why: dict[str, list[str]] = {}
        for kind in ("mult", "init_std", "lr", "eps", "weight_decay", "1-beta1", "1-beta2"):
            if kind.startswith("1-") and re.optimizer != "adamw":
                continue
            if (
                kind not in ("mult", "init_std", "lr", "weight_decay")
                and _TARGET_OF[kind] not in ir.roles[re.spec.name]
            ):
                continue
            if kind == "init_std" and re.spec.zero_init:
                continue
            f = _factor(ir, re, kind, axes)
            if not f:
                continue
            target = "init_var" if kind == "init_std" else kind
            values[target] = f"*= {_monomial({a: 2 * v for a, v in f.items()} if kind == 'init_std' else f)}"
            why[target] = re.why.get(kind) or ["derived"]
        lines.append("")
        if not values:
            lines.append(
                f"  # {re.spec.name} ({_placement(re)}): its rules in {ir.name} already satisfy the desiderata"
            )
            continue
        lines.append(f"  # {re.spec.name} ({_placement(re)}): factors on {ir.name}'s rules")
        lines.append(f"  role {re.spec.name}:")
        lines += _assignments(values, why)
    return "\n".join(lines) + "\n"


def _comment_safe(text: str) -> str:
    """A file name as it may appear in a `#` comment: printable characters on one line, nothing else."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
