"""Write a derivation (compiler/derive.py) as a `.scale` rule file, each rule commented with the constraints
that bind it; `derive_file` checks the text with the full compiler before anyone sees it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import sympy

from scalec.compiler.derive import (
    EPS_POLICIES,
    GAUGES,
    SDE,
    TIMESCALE,
    TP4,
    TP5,
    Derivation,
    DeriveError,
    DeriveSpec,
    RoleExponents,
    _monomial,
    derive,
)
from scalec.compiler.pipeline import compile_ir
from scalec.version import __version__

_HIDDEN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")
_KIND_ORDER = ("mult", "init_std", "lr", "eps", "weight_decay", "1-beta1", "1-beta2")
_CITES = (
    "Yang & Hu 2021, Tensor Programs IV, arXiv 2011.14522, Theorem 3.3 (stable abc-parametrisations)",
    "Yang et al. 2022, Tensor Programs V, arXiv 2203.03466, Table 3",
)
_DEPTH_CITE = "Dey et al. 2025, CompleteP, arXiv 2505.01618, Sec. 3 (depth desiderata)"
_SDE_CITE = "Malladi et al. 2022 (SDE scaling rules); Mlodozeniec et al. 2025, Complete(d)P, arXiv 2512.22382"
SPECTRAL_SHORT = "arXiv 2310.17813"
_SPECTRAL_CITE = "Yang, Simon & Bernstein 2023, A Spectral Condition for Feature Learning, arXiv 2310.17813"
_OPT_HPS = {
    "sgd": (
        "hp sgd_ratio = 2^6 in [2^0, 2^12] log  # SGD lr / AdamW lr (eta) at the base shape",
        "hp mu = 0.9 in [0, 0.99] linear  # SGD momentum",
    ),
    "muon": ("hp muon_ratio = 2^3 in [2^0, 2^6] log  # Muon lr / AdamW lr (eta) at the base shape",),
}


def command_line(s: DeriveSpec) -> str:
    """The canonical `scalec derive` command for a spec (every option spelled out)."""
    words = [
        "scalec derive",
        f"--axes {','.join(s.axes)}",
        f"--optimizer {s.optimizer}",
        f"--gauge {s.gauge}",
        f"--eps {s.eps}",
        f"--decay {s.decay}",
    ]
    if s.optimizer == "muon":
        words.append(f"--adjust-lr {s.adjust_lr}")
    if "depth" in s.axes and s.alpha[0] == s.alpha[1]:
        words.append(f"--param alpha={_num(s.alpha[0])}")
    return " ".join([*words, f"--name {s.name}"])


def render(d: Derivation) -> str:
    """The derivation as rule-file text (deterministic: same spec, same bytes)."""
    s = d.spec
    axes = ", ".join(s.axes)
    lines = [
        f"# Derived by `{command_line(s)}` (scalec {__version__}).",
        "# Exact rational LPs (compiler/derive.py): per role, p = a+b and the update exponent q take their smallest",
        "# stable values (maximal updates, then the largest stable init); the gauge fixes a.  Each rule's comment",
        "# names the constraints that bind it.",
        f"# gauge {s.gauge}: {GAUGES[s.gauge]}",
        f"# eps {s.eps}: {EPS_POLICIES[s.eps]}",
        f"parameterisation {s.name} extends {s.extends}",
        f'  "Derived by scalec derive: axes {axes}; {s.optimizer}; gauge {s.gauge}; eps {s.eps}; {s.decay} decay."',
    ]
    cites = list(_CITES)
    if "depth" in s.axes:
        cites.append(_DEPTH_CITE)
    if {"batch", "duration"} & set(s.axes):
        cites.append(_SDE_CITE)
    if s.optimizer == "muon":
        cites.append(_SPECTRAL_CITE)
    lines += [f'  cite "{c}"' for c in cites]
    decls = [f"  {hp}" for hp in _OPT_HPS.get(s.optimizer, ())]
    if "depth" in s.axes:
        lo, hi = s.alpha
        decls.append(
            f"  param alpha = {_num(hi)} in [{_num(lo)}, {_num(hi)}]  # depth exponent of the branch multiplier"
        )
    if s.decay == "independent":
        decls += [
            "  # Default = eta x lambda of SP (2^-8 x 0.1): the per-step shrink of coupled decay at the base shape.",
            "  hp lambda_ind = 1/2560 in [0, 2^-4] linear  # independent weight decay (shrink per step at schedule 1)",
        ]
    if decls:
        lines += ["", *decls]
    if s.optimizer == "sgd":
        lines += ["", "  role *: optimizer = sgd;  lr *= sgd_ratio;  momentum = mu"]
    if s.decay == "independent":
        lines += ["", "  role *: decay = independent;  weight_decay = lambda_ind"]
    shared = _shared_batch_duration(d)
    if shared:
        lines += ["", f"  # Batch and duration, every role: {SDE}; weight decay: {TIMESCALE}."]
        lines.append("  role *:")
        lines += _assignments(shared, {k: [] for k in shared})
    for names, re in _groups(d):
        exps = {k: {a: v for a, v in e.items() if not (shared and a in ("B", "D"))} for k, e in re.exps.items()}
        exps = {k: e for k, e in exps.items() if e}
        body = _rules(d, re, exps)
        if not body:
            continue
        lines += ["", f"  # {', '.join(names)}: {_placement(re)}", f"  role {_pattern(names)}:"]
        lines += body
    if d.sites:
        lines.append("")
        for site, value in d.sites.items():
            lines.append(f"  site {site} = {value}  # {_site_why(site)}")
    return "\n".join(lines) + "\n"


def derive_file(spec: DeriveSpec) -> str:
    """Derive, render and check: the text passes `scalec check`, or DeriveError names what failed."""
    text = render(derive(spec))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{spec.name.lower()}.scale"
        path.write_text(text)
        try:
            compile_ir(path)
        except Exception as exc:  # noqa: BLE001 - any failure of our own output is an internal error, stated
            raise DeriveError(
                f"error: derive produced a file that fails `scalec check` (a scalec bug): {exc}"
            ) from None
    return text


def _groups(d: Derivation) -> list[tuple[list[str], RoleExponents]]:
    out: dict[tuple, tuple[list[str], RoleExponents]] = {}
    for re in d.roles:
        exps = tuple(sorted((k, tuple(sorted((a, str(v)) for a, v in e.items()))) for k, e in re.exps.items()))
        why = tuple(sorted((k, tuple(v)) for k, v in re.why.items()))
        key = (exps, why, re.optimizer, re.spec.kind, re.spec.in_blocks)
        out.setdefault(key, ([], re))[0].append(re.spec.name)
    return list(out.values())


def _pattern(names: list[str]) -> str:
    if tuple(names) == _HIDDEN:
        return "hidden"
    return ", ".join(names)


def _placement(re: RoleExponents) -> str:
    where = "in blocks" if re.spec.in_blocks else "outside the blocks"
    return f"{re.spec.kind}, {where}, {re.optimizer}"


def _rules(d: Derivation, re: RoleExponents, exps: dict) -> list[str]:
    """One assignment a line, each with the constraints that bind it as a comment."""
    muon = re.optimizer == "muon" and d.spec.optimizer == "muon"
    values: dict[str, str] = {}
    why = {k: list(v) for k, v in re.why.items()}
    if muon:
        values["optimizer"] = "= muon"
        values["adjust_lr"] = f"= {d.spec.adjust_lr}"
        why["optimizer"] = [f"hidden matrices take Muon [{SPECTRAL_SHORT}]"]
    for kind in _KIND_ORDER:
        e = exps.get(kind)
        if kind == "lr" and muon:
            values["lr"] = "*= muon_ratio" + (f" * {_monomial(e)}" if e else "")
        elif not e:
            continue
        elif kind == "init_std":
            values["init_var"] = f"*= {_monomial({a: 2 * v for a, v in e.items()})}"
            why["init_var"] = why.pop("init_std", [])
        else:
            values[kind] = f"*= {_monomial(e)}"
    if not values:
        return []
    return _assignments(values, why)


def _assignments(values: dict, why: dict) -> list[str]:
    out = []
    items = list(values.items())
    for i, (kind, value) in enumerate(items):
        if not str(value).startswith(("*=", "=")):
            value = f"*= {_monomial(value)}"
        sep = ";" if i < len(items) - 1 else ""
        text = f"      {kind} {value}{sep}"
        reasons = "; ".join(dict.fromkeys(why.get(kind, [])))
        out.append(f"{text}  # {reasons}" if reasons else text)
    return out


def _shared_batch_duration(d: Derivation) -> dict:
    """The batch/duration factors when every role has the same ones (then one `role *` block states them)."""
    if not {"batch", "duration"} & set(d.spec.axes):
        return {}
    parts = []
    for re in d.roles:
        part = {k: {a: v for a, v in e.items() if a in ("B", "D")} for k, e in re.exps.items()}
        parts.append({k: e for k, e in part.items() if e})
    first = parts[0]
    return first if all(p == first for p in parts) else {}


def _site_why(site: str) -> str:
    if site == "output.mult":
        return f"the gauge's readout multiplier (a = p = 1) [{TP4}]"
    if site == "attn.scale":
        return f"attention logits 1/d_head [{TP5}, Sec. J / Table 3 note]"
    return "branch multiplier m_L^-alpha [CompleteP Sec. 3]"


def _num(x) -> str:
    x = sympy.Rational(x)
    return str(x.p) if x.q == 1 else f"{x.p}/{x.q}"
