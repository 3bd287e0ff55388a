"""Code generation: IR -> a plain, readable, deterministic Python module (jinja2 template)."""

from __future__ import annotations

import functools
import math
import re
import textwrap
from importlib import resources

import jinja2
import sympy

from scalec.compiler.domain import DOMAINS, SITE_DOMAIN, Domain
from scalec.compiler.hp_domains import cone, derive_hp_domains
from scalec.compiler.ir import Origin, ParameterisationIR, Rule
from scalec.compiler.printer import RulePrinter, field_name
from scalec.compiler.region import code_view
from scalec.compiler.symbols import BASE, FAN_IN, FAN_OUT, LAYER, RATIO, param_symbol
from scalec.compiler.vocabulary import AXES, AXIS_DOCS, MODULE_HP_KINDS, compress_roles
from scalec.version import __version__

ROLE_FIELDS = ("init_mean", "init_std", "lr", "weight_decay", "beta1", "beta2", "eps", "momentum", "ns_steps", "mult")
# The per-tensor arguments of a role function and the rule symbol each one carries.
TENSOR_ARGS = (("fan_in", FAN_IN), ("fan_out", FAN_OUT), ("layer", LAYER))
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def escape(text: str, quotes: str = "") -> str:
    """The one escaper for text that reaches generated code: printable ASCII only, no line breaks.

    Every character outside printable ASCII becomes its Python escape (`\\n`, `\\x00`, `\\u2028`, ...);
    backslashes and the characters in `quotes` are backslash-escaped too.  The result is safe inside a comment
    (quotes=""), a triple-quoted docstring (quotes='"') and a string literal delimited by any of `quotes`.
    """
    special = "\\" + quotes if quotes else ""
    out = []
    for ch in text:
        if ch in special:
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


def py_str(text: str) -> str:
    """A Python string literal equal to `text` (double-quoted unless that needs more escapes, as ruff prefers)."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    return quote + escape(text, quote) + quote


def comment(text: str) -> str:
    """Text for a `#` comment: one line of printable ASCII."""
    return escape(text)


def doc(text: str) -> str:
    """Text for the body of a triple-double-quoted docstring."""
    return escape(text, '"')


def file_label(path: str) -> str:
    """A rule file's name for comments and docs: as is when plain, else its repr."""
    name = path.rsplit("/", 1)[-1]
    return name if _PLAIN_NAME.fullmatch(name) else ascii(name)


def _py_literal(value) -> str:
    """A Python literal for a string or a number."""
    return py_str(value) if isinstance(value, str) else repr(value)


@functools.cache
def _template_env() -> jinja2.Environment:
    """The one jinja2 environment, so the template is parsed and compiled once per process (it was half of
    `generate`'s time)."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda n: resources.files("scalec.compiler.templates").joinpath(n).read_text()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = _py_literal
    return env


def _num(value) -> str:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"non-finite number {value} reached code generation")
    return repr(v)


LINE_LENGTH = 120  # the generated module's line length (ruff's, as the project's)


def _domain_code(d: Domain, key: str | None = None) -> str:
    """A Domain as the generated module's constructor call (fields at their defaults left out), with its key
    (`"lr": Domain("lr", low=0.0, low_strict=True)`) when given."""
    args = [py_str(d.kind)]
    for name, default in (("low", None), ("low_strict", False), ("high", None), ("high_strict", False)):
        value = getattr(d, name)
        if value != default:
            args.append(f"{name}={value if isinstance(value, bool) else _num(value)}")
    args += [f"{name}=True" for name in ("nonzero", "whole") if getattr(d, name)]
    code = f"Domain({', '.join(args)})"
    return f"{py_str(key)}: {code}" if key is not None else code


def _call_lines(head: str, args: list[str], indent: int) -> list[str]:
    """`head(args),` on one line, else as ruff formats it: the arguments on one line inside, else one a line."""
    one = f"{head}({', '.join(args)}),"
    if indent + len(one) <= LINE_LENGTH:
        return [one]
    inner = ", ".join(args)
    if indent + 4 + len(inner) <= LINE_LENGTH:
        return [f"{head}(", f"    {inner}", "),"]
    return [f"{head}(", *(f"    {a}," for a in args), "),"]


def _ref(o: Origin) -> str:
    """How a value cites its origin: `file:line`, or the bare tag of a step scalec added (`<fold>` -> `fold`)."""
    return f"{file_label(o.path)}:{o.line}" if o.line > 0 else o.path.strip("<>")


def _cite(origins: tuple[Origin, ...]) -> str:
    """The rule lines a value came from, as one comment: `sp.scale:26, completedp.scale:13`."""
    return comment(", ".join(dict.fromkeys(_ref(o) for o in origins)))


def _cited(code: str, cite: str, indent: int) -> list[str]:
    """A `name=value,` line with its citation trailing, or on the line above when the two overflow a line."""
    if not cite:
        return [code]
    if indent + len(code) + 4 + len(cite) <= LINE_LENGTH:
        return [f"{code}  # {cite}"]
    return [f"# {cite}", code]


def _rule_lines(groups: list[tuple[Origin, ...]], paths: tuple[str, ...]) -> list[str]:
    """One comment line per cited rule line (lineage order): `file:line  statement; statement`."""
    by_line: dict[tuple[str, int], list[str]] = {}
    refs: dict[tuple[str, int], str] = {}
    for origins in groups:
        for o in origins:
            texts = by_line.setdefault((o.path, o.line), [])
            refs[(o.path, o.line)] = _ref(o)
            if o.text not in texts:
                texts.append(o.text)
    rank = {p: i for i, p in enumerate(paths)}
    keys = sorted(by_line, key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1]))
    width = max((len(refs[k]) for k in keys), default=0)
    lines = []
    for key in keys:
        texts = by_line[key]
        head = texts[0].split(": ", 1)[0] + ": "
        if len(texts) > 1 and ": " in texts[0] and all(t.startswith(head) for t in texts):
            texts = [texts[0], *(t[len(head) :] for t in texts[1:])]
        lines.append(comment(f"{refs[key]:<{width}}  {'; '.join(texts)}"))
    return lines


def _assignment(name: str, entries: list[str]) -> list[str]:
    """`name = {entries}` on one line when it fits (as ruff would write it), else one entry a line."""
    line = f"{name} = {{{', '.join(entries)}}}"
    if len(line) <= LINE_LENGTH:
        return [line]
    return [f"{name} = {{", *(f"    {e}," for e in entries), "}"]


def _dict_lines(entries: list[tuple[str, str]]) -> list[str]:
    """The entries (key code, value code) of a dict literal, runs of keys sharing a value as `**dict.fromkeys`."""
    lines, i = [], 0
    while i < len(entries):
        j = i
        while j + 1 < len(entries) and entries[j + 1][1] == entries[i][1]:
            j += 1
        keys = [k for k, _ in entries[i : j + 1]]
        run = f"**dict.fromkeys(({', '.join(keys)}), {entries[i][1]}),"
        if j > i and 4 + len(run) <= LINE_LENGTH:
            lines.append(run)
        else:
            lines += [f"{k}: {v}," for k, v in entries[i : j + 1]]
        i = j + 1
    return lines


# RoleHParams' defaults for the word-valued settings: a role function prints only the settings that differ.
SETTING_DEFAULTS = {"optimizer": "adamw", "decay": "coupled"}


def _settings_view(settings: dict[str, str]) -> list[tuple[str, str]]:
    """Word-valued settings as Python literals (nesterov a bool, the others strings), defaults left out."""
    return [
        (f"{name}={repr(word == 'true') if name == 'nesterov' else py_str(word)},", "")
        for name, word in settings.items()
        if SETTING_DEFAULTS.get(name) != word
    ]


def _body_name(label: str, taken: set[str]) -> str:
    ident = "_" + re.sub(r"\W+", "_", label.replace(".*", "")).strip("_")
    if len(ident) > 40:
        ident = "_rules"
    name, i = ident, 2
    while name in taken:
        name, i = f"{ident}_{i}", i + 1
    taken.add(name)
    return name


class _View:
    """Prepares everything the template prints; the template only formats."""

    def __init__(self, ir: ParameterisationIR):
        self.ir = ir
        names = {str(s): str(s) for s in RATIO.values()}
        names.update({f"{a}0": f"BASE.{a}" for a in AXES})
        names.update({h: f"hp.{field_name(h)}" for h in ir.hps})
        order = {h: 0 for h in ir.hps}
        order.update({f"{a}0": 1 for a in AXES})
        order.update({str(RATIO[a]): 2 + i for i, a in enumerate(AXES)})
        names.update({str(s): arg for arg, s in TENSOR_ARGS})  # per-tensor arguments (`l` is `layer`)
        order.update({str(s): 2 + len(AXES) + i for i, (_, s) in enumerate(TENSOR_ARGS)})
        self.printer = RulePrinter(names, order)
        self.param_values = {param_symbol(k): q.value for k, q in ir.params.items()}

    def expr(self, rule: Rule) -> sympy.Expr:
        return rule.expr.subs(self.param_values)

    def cited(self) -> list[tuple[Origin, ...]]:
        """The origins of every value the module prints (role fields in ROLES order, then sites)."""
        rules = [self.ir.roles[role] for role in self.ir.role_table]
        roles = [r[k].origins for r in rules for k in ROLE_FIELDS if k in r]
        return roles + [rule.origins for rule in self.ir.sites.values()]

    def prologue(self, exprs: list[sympy.Expr], args: dict[str, bool]) -> list[str]:
        """`m_N, _, ... = ratios(shape)` for the ratios used; `del` for the arguments (name -> read?) the rules
        never read."""
        used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
        names = [str(RATIO[a]) if RATIO[a] in used else "_" for a in AXES]
        lines = [f"{', '.join(names)} = ratios(shape)"]
        if all(n == "_" for n in names):
            lines = ["del shape  # no rule here scales with the shape"]
        unused = [a for a, read in args.items() if not read]
        if unused:
            lines.append(f"del {', '.join(unused)}  # not read by these rules")
        return lines

    def bodies(self) -> tuple[list[dict], dict[str, str]]:
        """One function per distinct rule body; role -> function name."""
        by_key: dict[tuple, list[str]] = {}
        fields_of: dict[tuple, list[dict]] = {}
        exprs_of: dict[tuple, list[sympy.Expr]] = {}
        for role in self.ir.role_table:  # the bundled roles, then those the file declares
            kinds = [k for k in ROLE_FIELDS if k in self.ir.roles[role]]  # each optimizer has its own targets
            rules = [self.ir.roles[role][k] for k in kinds]
            exprs = [self.expr(r) for r in rules]
            fields = [
                (f"{k}={self.printer.value(e)},", _cite(r.origins)) for k, e, r in zip(kinds, exprs, rules, strict=True)
            ]
            fields += _settings_view(self.ir.settings.get(role, {}))  # optimizer, decay, ... (uncommented)
            key = tuple(fields)
            by_key.setdefault(key, []).append(role)
            fields_of[key], exprs_of[key] = [line for f in fields for line in _cited(*f, indent=8)], exprs
        taken: set[str] = set()
        bodies, body_of = [], {}
        hp_symbols = {str(s) for s in self.ir.hps}
        for key, roles in by_key.items():
            label = compress_roles(roles)
            ident = _body_name(label, taken)
            used = set().union(*(e.free_symbols for e in exprs_of[key]))
            prologue = self.prologue(exprs_of[key], {"hp": any(s.name in hp_symbols for s in used)})
            read = [f"{arg}: {'int' if s == LAYER else 'float'}" for arg, s in TENSOR_ARGS if s in used]
            tensor_args = (
                "**_" if not read else ", ".join(["*", *read] + (["**_"] if len(read) < len(TENSOR_ARGS) else []))
            )
            listed = ", ".join(roles)
            text = "every role" if label == "all roles" else label if label == listed else f"{label} ({listed})"
            text = text if len(text) <= 100 else label
            bodies.append(
                dict(ident=ident, doc=text, prologue=prologue, fields=fields_of[key], tensor_args=tensor_args)
            )
            body_of.update({r: ident for r in roles})
        return bodies, body_of

    def render(self, version: str) -> str:
        """The module's text: each part of the template's context prepared by its own method, then formatted."""
        axes, hps, params = self.axes(), self.hps(), self.params()
        bodies, body_of = self.bodies()
        roles = self.roles(body_of)
        sites, site_prologue = self.sites()
        template = _template_env().get_template("module.py.j2")
        return template.render(
            **self.header(version),
            params=params,
            axes=axes,
            hps=hps,
            roles=roles,
            **_role_subsets(roles),
            bodies=bodies,
            module_kinds=MODULE_HP_KINDS,
            sites=sites,
            site_prologue=site_prologue,
            ratio_args=", ".join(str(RATIO[a]) for a in AXES),
            constraints=self.constraints(),
            **_domain_tables(),
            **_lookup_tables(roles, hps),
            rule_lines=_rule_lines(self.cited(), self.ir.paths),
            profiles=[_profile_view(self.ir, p) for p in self.ir.profiles.values()],
        )

    def header(self, version: str) -> dict:
        """The module's provenance: rule name, scalec version, source files, lineage, source hash and docstring."""
        ir = self.ir
        doc_text = doc(" ".join(ir.docs)) or ir.name
        return dict(
            name=ir.name,
            version=version,
            source_file=doc(file_label(ir.paths[-1])),
            doc=textwrap.wrap(doc_text, 110, break_long_words=False, break_on_hyphens=False),
            lineage=ir.lineage,
            source_files=[p.rsplit("/", 1)[-1] for p in ir.paths],
            sha=ir.source_sha256,
            cites=ir.cites,
        )

    def axes(self) -> list[dict]:
        """The shape axes in AXES order: base value, search range and the line that declared them."""
        return [
            dict(
                name=a,
                doc=comment(AXIS_DOCS[a]),
                base=_num(q.value),
                low=_num(q.low),
                high=_num(q.high),
                comment=comment(f"axis {a} (base {q.value}), {file_label(q.loc.path)}:{q.loc.line}"),
            )
            for a, q in ((a, self.ir.axes[a]) for a in AXES)
        ]

    def hps(self) -> list[dict]:
        """The hyperparameters: their HPSpec lines (with the exact domain derived from the rules) and fields."""
        hp_domains = derive_hp_domains(self.ir)
        return [
            dict(
                name=h,
                lines=_call_lines(
                    f"{py_str(h)}: HPSpec",
                    [py_str(h), _num(q.value), _num(q.low), _num(q.high), py_str(q.scale), _domain_code(hp_domains[h])],
                    4,
                ),
                field=field_name(h),
                default=_num(q.value),
                low=_num(q.low),
                high=_num(q.high),
                scale=q.scale,
                comment=comment(f"{file_label(q.loc.path)}:{q.loc.line}"),
            )
            for h, q in self.ir.hps.items()
        ]

    def params(self) -> list[dict]:
        """The rule's params at the values this module was compiled with (each with its range and line)."""
        return [
            dict(
                name=k,
                value=_num(q.value),
                comment=comment(f"param {k} = {q.value} in [{q.low}, {q.high}], {file_label(q.loc.path)}:{q.loc.line}"),
            )
            for k, q in self.ir.params.items()
        ]

    def roles(self, body_of: dict[str, str]) -> list[dict]:
        """One entry per role of the role table: its class, kind, rule-body function and what its rules read."""
        ir = self.ir
        return [
            dict(
                name=r,
                width_class=info.width_class,
                kind=info.kind,
                in_blocks=info.in_blocks,
                body=body_of[r],
                kinds=[k for k in MODULE_HP_KINDS if k in ir.roles[r]],
                fans=repr(ir.fans(r)),
                reads_fans=any(s in rule.expr.free_symbols for rule in ir.roles[r].values() for s in (FAN_IN, FAN_OUT)),
                layered=any(LAYER in rule.expr.free_symbols for rule in ir.roles[r].values()),
            )
            for r, info in ir.role_table.items()
        ]

    def sites(self) -> tuple[list[dict], list[str]]:
        """The forward-multiplier sites as cited `field=value,` lines, and the prologue their function needs."""
        site_exprs = {s: self.expr(r) for s, r in self.ir.sites.items()}
        sites = [
            dict(
                name=s,
                field=s.replace(".", "_"),
                lines=_cited(f"{s.replace('.', '_')}={self.printer.value(site_exprs[s])},", _cite(r.origins), 8),
            )
            for s, r in self.ir.sites.items()
        ]
        return sites, self.prologue(list(site_exprs.values()), {})

    def constraints(self) -> list[dict]:
        """The shape constraints check_shape tests, their comments made safe for the module."""
        constraints = code_view(self.ir)
        for c in constraints:
            c["comments"] = [comment(line) for line in c["comments"]]
        return constraints


def _role_subsets(roles: list[dict]) -> dict[str, list[dict]]:
    """The roles the template lists apart: those without every module kind, those reading fans, the layered."""
    return dict(
        other_kinds=[r for r in roles if tuple(r["kinds"]) != MODULE_HP_KINDS],
        fan_roles=[r for r in roles if r["reads_fans"]],
        layered=[r for r in roles if r["layered"]],
    )


def _domain_tables() -> dict[str, list[str]]:
    """The value domains of every setting and site, and the cones the per-module multipliers live in."""
    return dict(
        value_domains=[_domain_code(d, k) for k, d in DOMAINS.items()] + [_domain_code(SITE_DOMAIN, "site")],
        multiplier_domains=[_domain_code(cone(k, DOMAINS[k]), k) for k in MODULE_HP_KINDS],
    )


def _lookup_tables(roles: list[dict], hps: list[dict]) -> dict[str, list[str]]:
    """The module's lookup dicts: role -> width class, role -> (kind, in blocks), role -> rule body, HP -> field."""
    return dict(
        role_classes=_dict_lines([(py_str(r["name"]), py_str(r["width_class"])) for r in roles]),
        role_kinds=_dict_lines([(py_str(r["name"]), f"({py_str(r['kind'])}, {r['in_blocks']})") for r in roles]),
        role_rules=_dict_lines([(py_str(r["name"]), r["body"]) for r in roles]),
        field_of=_assignment("_FIELD_OF", [f"{py_str(h['name'])}: {py_str(h['field'])}" for h in hps]),
    )


def _profile_view(ir: ParameterisationIR, p) -> dict:
    """A depth profile for the template: its knots' HP names and its declaration (compiler/profile.py)."""
    lines = ir.sources[ir.paths.index(p.loc.path)].splitlines() if p.loc.path in ir.paths else []
    text = lines[p.loc.line - 1].split("#", 1)[0].strip() if 0 < p.loc.line <= len(lines) else p.name
    text = comment(f"{file_label(p.loc.path)}:{p.loc.line}  {text}")
    return dict(name=p.name, field=field_name(p.name), knots=p.knots, comment=text)


def generate(ir: ParameterisationIR) -> str:
    """The generated module's source text (same IR -> identical bytes)."""
    text = _View(ir).render(__version__)
    return re.sub(r"[ \t]+\n", "\n", text)


__all__ = ["generate", "field_name", "BASE"]
