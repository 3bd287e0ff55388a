"""Code generation: IR -> a plain, readable, deterministic Python module (jinja2 template)."""

from __future__ import annotations

import json
import keyword
import re
from importlib import resources
from pathlib import Path

import jinja2
from sympy.printing.pycode import PythonCodePrinter

from scalec.compiler.ir import Origin, ParameterisationIR, Rule
from scalec.compiler.region import code_view
from scalec.compiler.symbols import BASE, RATIO, param_symbol
from scalec.compiler.vocabulary import AXES, AXIS_DOCS, MODULE_HP_KINDS, ROLES

ROLE_FIELDS = ("init_mean", "init_std", "lr", "weight_decay", "beta1", "beta2", "eps", "mult")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def field_name(name: str) -> str:
    """A Python-safe attribute name: keywords get a trailing underscore."""
    return f"{name}_" if keyword.iskeyword(name) or keyword.issoftkeyword(name) else name


class _Printer(PythonCodePrinter):
    """Prints rule expressions: ratios as locals, hps as `hp.<field>`, bases as `BASE.<axis>`."""

    def __init__(self, names: dict[str, str]):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self._names = names

    def _print_Symbol(self, expr):  # noqa: N802 - sympy printer protocol
        return self._names[expr.name]


def _py_literal(value) -> str:
    """A Python literal for a string (double-quoted, ASCII-escaped) or number."""
    return json.dumps(value, ensure_ascii=True) if isinstance(value, str) else repr(value)


def _num(value) -> str:
    v = float(value)
    return repr(int(v)) + ".0" if v.is_integer() and abs(v) < 1e15 else repr(v)


def _comment(text: str) -> str:
    return _UNPRINTABLE.sub("?", text)


def _origin_comments(origins: tuple[Origin, ...]) -> list[str]:
    if not origins:
        return ["(built-in default)"]
    return [f"{o.short():<18} {_comment(o.text)}" for o in origins]


class _View:
    """Prepares everything the template prints; the template only formats."""

    def __init__(self, ir: ParameterisationIR):
        self.ir = ir
        names = {str(s): str(s) for s in RATIO.values()}
        names.update({f"{a}0": f"BASE.{a}" for a in AXES})
        names.update({h: f"hp.{field_name(h)}" for h in ir.hps})
        self.printer = _Printer(names)
        self.param_values = {param_symbol(k): q.value for k, q in ir.params.items()}

    def code(self, rule: Rule) -> str:
        expr = rule.expr.subs(self.param_values)
        return self.printer.doprint(expr)

    def render(self, version: str) -> str:
        ir = self.ir
        env = jinja2.Environment(
            loader=jinja2.FunctionLoader(
                lambda n: resources.files("scalec.compiler.templates").joinpath(n).read_text()
            ),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        env.filters["py"] = _py_literal
        axes = [
            dict(
                name=a,
                doc=_comment(AXIS_DOCS[a]),
                base=_num(q.value),
                low=_num(q.low),
                high=_num(q.high),
                comment=_comment(f"axis {a} (base {q.value}), {Path(q.loc.path).name}:{q.loc.line}"),
            )
            for a, q in ((a, ir.axes[a]) for a in AXES)
        ]
        hps = [
            dict(
                name=h,
                field=field_name(h),
                default=_num(q.value),
                low=_num(q.low),
                high=_num(q.high),
                scale=q.scale,
                comment=_comment(f"{Path(q.loc.path).name}:{q.loc.line}"),
            )
            for h, q in ir.hps.items()
        ]
        params = [
            dict(
                name=k,
                value=_num(q.value),
                comment=_comment(f"param {k} = {q.value} in [{q.low}, {q.high}], {Path(q.loc.path).name}:{q.loc.line}"),
            )
            for k, q in ir.params.items()
        ]
        roles = []
        for role, width_class in ROLES.items():
            fields = [
                dict(kind=k, code=self.code(ir.roles[role][k]), comments=_origin_comments(ir.roles[role][k].origins))
                for k in ROLE_FIELDS
            ]
            roles.append(dict(name=role, ident=role.replace(".", "_"), width_class=width_class, fields=fields))
        sites = [
            dict(name=s, field=s.replace(".", "_"), code=self.code(r), comments=_origin_comments(r.origins))
            for s, r in ir.sites.items()
        ]
        return env.get_template("module.py.j2").render(
            name=ir.name,
            version=version,
            source_file=Path(ir.paths[-1]).name,
            doc=_comment(" ".join(ir.docs)).replace("\\", "\\\\") or ir.name,
            lineage=ir.lineage,
            sha=ir.source_sha256,
            cites=ir.cites,
            params=params,
            axes=axes,
            hps=hps,
            roles=roles,
            module_kinds=MODULE_HP_KINDS,
            sites=sites,
            ratio_args=", ".join(str(RATIO[a]) for a in AXES),
            constraints=code_view(ir),
        )


def generate(ir: ParameterisationIR) -> str:
    """The generated module's source text (same IR -> identical bytes)."""
    from scalec import __version__

    text = _View(ir).render(__version__)
    return re.sub(r"[ \t]+\n", "\n", text)


__all__ = ["generate", "field_name", "BASE"]
