"""Resolution: fold an inheritance chain of rule files into one IR (per role x HP kind a sympy expression)."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping

import sympy

from scalec.compiler.declared_roles import UndecidedRole, default_rules
from scalec.compiler.expectations import LEVELS
from scalec.compiler.ir import ROLE_KINDS, Expectation, Origin, ParameterisationIR, Quantity, RoleInfo, Rule
from scalec.compiler.optimizers import (
    ALL_SETTINGS,
    ALL_TARGETS,
    COMMON_TARGETS,
    DECAY_CONVENTIONS,
    ONE_MINUS_TARGETS,
    OPTIMIZERS,
    optimizer_of,
)
from scalec.compiler.printer import field_name
from scalec.compiler.profile import Profile, knot_names
from scalec.compiler.symbols import (
    LAYER,
    ExprConverter,
    bounded_rational,
    builtin_names,
    hp_symbol,
    param_symbol,
    role_rule_names,
)
from scalec.compiler.vocabulary import AXES, RESERVED, SITES, TARGET_ALIASES
from scalec.dsl import ast
from scalec.dsl.errors import RuleError, did_you_mean

KEYWORDS_PY = frozenset({"None", "True", "False"})
# Names the generated module's HParams class uses itself (members, and names its class body looks up).
GENERATED_NAMES = frozenset({"get", "replace", "multipliers", "field", "fields", "dict", "float", "self", "hp"})
DEFAULT_SITES = {"residual.attn": 1, "residual.mlp": 1, "output.mult": 1, "embed.mult": 1}
DEFAULT_KINDS = {"init_mean": 0, "mult": 1}


class _FileResolver:
    """Applies one file's statements on top of the state inherited from its parent."""

    def __init__(self, ir: ParameterisationIR, f: ast.RuleFile, lets: dict[str, sympy.Expr]):
        self.ir, self.f, self.lets = ir, f, lets
        self.declared: dict[tuple[str, str], ast.Loc] = {}
        self.assigned: dict[tuple[str, str], tuple[ast.Loc, int]] = {}
        self.lines = f.source.splitlines()
        self.names = self._initial_scope()  # kept up to date as hps, params and lets are declared

    def error(self, loc: ast.Loc, message: str, hint: str | None = None) -> RuleError:
        return RuleError(loc, message, hint, self.f.source)

    # scope ----------------------------------------------------------------------------------------
    def _initial_scope(self) -> dict[str, sympy.Expr]:
        names = builtin_names()
        knots = {k for p in self.ir.profiles.values() for k in p.knots}  # rules use a profile as NAME(l)
        for name, q in self.ir.hps.items():
            if name not in knots:
                names[name] = hp_symbol(name, q.low if q.low is not None else q.value)
        for name in self.ir.params:
            names[name] = param_symbol(name)
        names.update(self.lets)
        return names

    def convert(
        self, e: ast.Expr, what: str = "expression", role_rule: bool = False, ratio_exponents: bool = False
    ) -> sympy.Expr:
        params = {k: q.value for k, q in self.ir.params.items()}
        scope = {**self.names, **role_rule_names()} if role_rule else self.names
        return ExprConverter(scope, params, self.f.source, what, ratio_exponents, self.ir.profiles)(e)

    def constant(self, e: ast.Expr, what: str) -> sympy.Rational:
        value = ExprConverter({}, {}, self.f.source, what)
        try:
            v = value(e)
        except RuleError as exc:
            raise self.error(
                exc.loc, f"{what} must be a number: {exc.message}", "use numbers, + - * / ^ and sqrt/min/max only"
            ) from None
        if not v.is_Rational:
            v = sympy.nsimplify(v)
            if not v.is_Rational:
                raise self.error(e.loc, f"{what} must be an exact rational, got {v}")
        return v

    def origin(self, loc: ast.Loc, prefix: str = "") -> Origin:
        """The rule's own source text (one assignment, with its `role ...:` head) for comments."""
        lines = self.lines
        text = lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""
        if prefix and loc.end_line == loc.line and loc.end_col > loc.col:
            text = prefix + text[loc.col - 1 : loc.end_col - 1]
        return Origin(self.f.path, loc.line, " ".join(text.split()))

    def once(self, kind: str, name: str, loc: ast.Loc) -> None:
        key = (kind, name)
        if key in self.declared:
            raise self.error(
                loc,
                f"duplicate definition of {kind} '{name}' (first defined at line {self.declared[key].line})",
                "remove one of them; a child file may override its parent's definitions",
            )
        self.declared[key] = loc

    def check_name(self, name: str, loc: ast.Loc, kind: str) -> None:
        if name in RESERVED or name in KEYWORDS_PY or name in self.ir.role_table or name in TARGET_ALIASES:
            raise self.error(loc, f"'{name}' is a reserved name and cannot be used for a {kind}", "pick another name")
        if name.startswith("_"):
            raise self.error(
                loc,
                f"names starting with '_' are reserved for Python internals; '{name}' cannot name a {kind}",
                f"pick another name, e.g. '{name.lstrip('_') or 'x'}'",
            )
        if name in GENERATED_NAMES:
            raise self.error(
                loc,
                f"'{name}' is reserved: the generated module's HParams uses it; it cannot name a {kind}",
                f"pick another name, e.g. '{name}_{kind}'",
            )
        clash = next((h for h in self.ir.hps if h != name and field_name(h) == field_name(name)), None)
        if kind == "hp" and clash is not None:
            raise self.error(
                loc, f"hps '{name}' and '{clash}' would share the Python name '{field_name(name)}'", "rename one"
            )

    # statements -----------------------------------------------------------------------------------
    def run(self) -> None:
        for s in self.f.statements:
            getattr(self, f"do_{type(s).__name__}")(s)

    def do_Docstring(self, s: ast.Docstring) -> None:
        self.ir.docs.append(s.text)

    def do_Cite(self, s: ast.Cite) -> None:
        self.ir.cites.append(s.text)

    def _range(self, r: ast.Range | None, what: str):
        if r is None:
            return None, None
        low, high = self.constant(r.low, f"{what} lower bound"), self.constant(r.high, f"{what} upper bound")
        if low > high:
            raise self.error(r.loc, f"empty range [{low}, {high}] for {what}", "write [low, high]")
        return low, high

    def do_AxisDecl(self, s: ast.AxisDecl) -> None:
        if s.name not in AXES:
            raise self.error(
                s.loc, f"unknown axis '{s.name}'", did_you_mean(s.name, AXES) or f"axes: {', '.join(AXES)}"
            )
        self.once("axis", s.name, s.loc)
        base = self.constant(s.base, f"base of axis {s.name}")
        low, high = self._range(s.range, f"axis {s.name}")
        if base <= 0:
            raise self.error(s.loc, f"base of axis {s.name} must be positive, got {base}")
        if low is not None and not (low <= base <= high):
            raise self.error(s.loc, f"base {base} of axis {s.name} lies outside its range [{low}, {high}]")
        if low is None and s.name in self.ir.axes:
            low, high = self.ir.axes[s.name].low, self.ir.axes[s.name].high
        if low is not None and low <= 0:
            raise self.error(s.range.loc if s.range else s.loc, f"range of axis {s.name} must be positive")
        self.ir.axes[s.name] = Quantity(s.name, base, low, high, None, s.loc)

    def do_HPDecl(self, s: ast.HPDecl) -> None:
        self.check_name(s.name, s.loc, "hp")
        if s.name in self.ir.params or s.name in self.lets:
            raise self.error(s.loc, f"'{s.name}' is already a param or let", "pick another name")
        self.once("hp", s.name, s.loc)
        default = self.constant(s.default, f"default of hp {s.name}")
        low, high = self._range(s.range, f"hp {s.name}")
        if low is None:
            low = high = default
        if not (low <= default <= high):
            raise self.error(s.loc, f"default {default} of hp {s.name} lies outside its range [{low}, {high}]")
        scale = s.scale or ("log" if low > 0 else "linear")
        if s.knots is not None or s.name in self.ir.profiles:
            self.declare_profile(s, default, low, high)
            return
        owner = next((p for p in self.ir.profiles.values() if s.name in p.knots), None)
        if owner is not None:
            raise self.error(
                s.loc, f"'{s.name}' is a knot of depth profile '{owner.name}'", "pick another name for this hp"
            )
        if scale == "log" and low <= 0:
            raise self.error(
                s.loc, f"hp {s.name} has a log scale but its range reaches {low}", "use `linear` or a positive range"
            )
        self.ir.hps[s.name] = Quantity(s.name, default, low, high, scale, s.loc)
        self.names[s.name] = hp_symbol(s.name, low)

    def declare_profile(self, s: ast.HPDecl, default, low, high) -> None:
        """`hp NAME = 1 in [lo, hi] log knots K`: K tunable knots NAME_0.. over relative depth (compiler/profile.py)."""
        if s.range is None:
            raise self.error(
                s.loc,
                f"depth profile '{s.name}' needs a search range for its knots",
                f"e.g. `hp {s.name} = 1 in [1/8, 8] log knots 3`",
            )
        if low <= 0:
            raise self.error(
                s.range.loc,
                f"depth profile '{s.name}' is interpolated in log space, but its range reaches {low}",
                "give a positive range, e.g. [1/8, 8]",
            )
        if s.scale == "linear":
            raise self.error(
                s.loc,
                f"depth profile '{s.name}' is interpolated and searched in log space; it cannot be linear",
                "drop `linear` (or write `log`)",
            )
        if s.name in self.ir.hps:
            raise self.error(s.loc, f"'{s.name}' is an hp of the parent, not a depth profile", "pick another name")
        prev = self.ir.profiles.get(s.name)
        if s.knots is None or (prev is not None and len(prev.knots) != s.knots):
            raise self.error(
                s.loc,
                f"depth profile '{s.name}' has {len(prev.knots)} knots in the parent; a child may change its default "
                "and range, not its knot count",
                f"write `knots {len(prev.knots)}`, or declare a new profile",
            )
        knots = knot_names(s.name, s.knots)
        for k in knots:
            self.check_name(k, s.loc, "hp")
            own = prev is not None and k in prev.knots  # a child re-declaring the profile keeps its knots
            if k in self.ir.params or k in self.lets or (k in self.ir.hps and not own):
                raise self.error(s.loc, f"knot '{k}' of depth profile '{s.name}' is already a name", "rename one")
        for k in knots:
            self.ir.hps[k] = Quantity(k, default, low, high, "log", s.loc)
        self.ir.profiles[s.name] = Profile(s.name, knots, default, low, high, s.loc)

    def do_ParamDecl(self, s: ast.ParamDecl) -> None:
        self.check_name(s.name, s.loc, "param")
        if s.name in self.ir.hps or s.name in self.ir.profiles or s.name in self.lets:
            raise self.error(s.loc, f"'{s.name}' is already an hp or let", "pick another name")
        self.once("param", s.name, s.loc)
        value = self.constant(s.value, f"value of param {s.name}")
        low, high = self._range(s.range, f"param {s.name}")
        if low is None:
            low = high = value
        if not (low <= value <= high):
            raise self.error(s.loc, f"param {s.name} = {value} lies outside its range [{low}, {high}]")
        self.ir.params[s.name] = Quantity(s.name, value, low, high, None, s.loc)
        self.names[s.name] = param_symbol(s.name)

    def do_LetDecl(self, s: ast.LetDecl) -> None:
        self.check_name(s.name, s.loc, "let")
        if s.name in self.ir.hps or s.name in self.ir.profiles or s.name in self.ir.params:
            raise self.error(s.loc, f"'{s.name}' is already an hp or param", "pick another name")
        self.once("let", s.name, s.loc)
        self.lets[s.name] = self.names[s.name] = self.convert(s.value, f"let {s.name}")

    def do_GroupDecl(self, s: ast.GroupDecl) -> None:
        self.check_name(s.name, s.loc, "group")
        self.once("group", s.name, s.loc)
        roles: list[str] = []
        for p in s.patterns:
            roles.extend(r for r in self.expand(p) if r not in roles)
        self.ir.groups[s.name] = tuple(roles)

    def expand(self, p: ast.Pattern) -> tuple[str, ...]:
        roles = self.ir.role_table  # the bundled roles and those declared so far
        if p.text in roles:
            return (p.text,)
        if p.text in self.ir.groups:
            return self.ir.groups[p.text]
        if "*" in p.text:
            hits = tuple(r for r in roles if fnmatch.fnmatchcase(r, p.text))
            if hits:
                return hits
            raise self.error(p.loc, f"pattern '{p.text}' matches no role", f"roles: {', '.join(roles)}")
        raise self.error(
            p.loc,
            f"unknown role or group '{p.text}'",
            did_you_mean(p.text, list(roles) + list(self.ir.groups))
            or f"declare a role with `new role {p.text}: KIND` (KIND: {', '.join(ROLE_KINDS)}; add `in blocks` "
            "inside the residual blocks) or a group with `group NAME = ...`",
        )

    def do_RoleDecl(self, s: ast.RoleDecl) -> None:
        """`new role NAME: KIND [in blocks]`: a role with the default rules of its kind and placement."""
        if s.name in self.ir.role_table:
            where = self.ir.role_table[s.name].declared
            first = f" (declared at {where.path}:{where.line})" if where else " (a bundled role)"
            raise self.error(s.loc, f"role '{s.name}' already exists{first}", "pick another name")
        taken = self.ir.groups.keys() | self.ir.hps.keys() | self.ir.params.keys() | self.lets.keys()
        if s.name in taken:
            raise self.error(s.loc, f"'{s.name}' is already a group, hp, param or let", "pick another role name")
        for part in s.name.split("."):
            if part in RESERVED or part in KEYWORDS_PY or part.startswith("_") or part in TARGET_ALIASES:
                raise self.error(s.loc, f"'{s.name}' cannot name a role: '{part}' is reserved", "pick another name")
        if s.kind not in ROLE_KINDS:
            raise self.error(
                s.kind_loc,
                f"unknown role kind '{s.kind}'",
                did_you_mean(s.kind, ROLE_KINDS)
                or "kinds: embedding (fixed -> width), hidden (width -> width), readout (width -> fixed), "
                "vector (width)",
            )
        info = RoleInfo(s.kind, s.in_blocks, s.loc)
        try:
            rules, settings, derivation = default_rules(self.ir, s.name, info, self.origin(s.loc))
        except UndecidedRole as exc:
            raise self.error(s.loc, exc.message, exc.hint) from None
        self.ir.role_table[s.name] = RoleInfo(s.kind, s.in_blocks, s.loc, derivation)
        self.ir.roles[s.name] = rules
        self.ir.settings[s.name] = settings

    def do_ExpectDecl(self, s: ast.ExpectDecl) -> None:
        """`expect AREA: LEVEL; ...`: a child's level for an area replaces its parent's."""
        for e in s.items:
            if e.area not in LEVELS:
                raise self.error(
                    e.loc,
                    f"unknown expectation area '{e.area}'",
                    did_you_mean(e.area, LEVELS) or f"areas: {', '.join(LEVELS)}",
                )
            levels = LEVELS[e.area]
            if e.level not in levels:
                raise self.error(
                    e.level_loc,
                    f"unknown {e.area} level '{e.level}'",
                    did_you_mean(e.level, levels) or f"{e.area} levels: {', '.join(levels)}",
                )
            self.once("expectation", e.area, e.loc)
            self.ir.expectations[e.area] = Expectation(e.area, e.level, e.loc)

    def do_RoleRule(self, s: ast.RoleRule) -> None:
        # Specificity lets a later, narrower statement override a broader one in the same file
        # (`role *: init_std = sigma` then `role norms: init_std = 0`); the reverse is a duplicate.
        roles: dict[str, int] = {}
        for p in s.patterns:
            spec = 2 if p.text in self.ir.role_table else (0 if p.text == "*" else 1)
            for r in self.expand(p):
                roles[r] = max(roles.get(r, 0), spec)
        head = f"role {', '.join(p.text for p in s.patterns)}: "
        for a in s.assignments:
            if not a.target.one_minus and a.target.kind in ALL_SETTINGS:
                for role in roles:
                    self.setting(role, a, head)
                continue
            kind, transform = self.target(a.target)
            for role in roles:
                self.check_target(role, kind, a)
            half_life = kind in ("beta1", "beta2") and transform == "plain"  # beta1 = beta1^(m_B/m_D)
            value = self.convert(a.value, f"rule for {a.target}", role_rule=True, ratio_exponents=half_life)
            if LAYER in value.free_symbols:
                outside = [r for r in roles if not self.ir.role_table[r].in_blocks]
                if outside:
                    raise self.error(
                        a.value.loc,
                        f"the block index l is not defined for role '{outside[0]}' (not inside a residual block)",
                        "use l only in rules for roles inside blocks (hidden matrices, norm, qk_norm, bias)",
                    )
            for role, spec in roles.items():
                self.assign(role, kind, transform, a, value, spec, head)

    def target(self, t: ast.Target):
        name = f"1-{t.kind}" if t.one_minus else t.kind
        known = ALL_TARGETS + TARGET_ALIASES
        if name not in known:
            raise self.error(
                t.loc,
                f"unknown hyperparameter '{name}'",
                did_you_mean(name, known + ALL_SETTINGS) or f"targets: {', '.join(known + ALL_SETTINGS)}",
            )
        if name == "init_var":
            return "init_std", "sqrt"
        if t.one_minus:
            if t.kind not in ONE_MINUS_TARGETS:
                raise self.error(t.loc, f"'1-{t.kind}' is not a target", f"write `{t.kind}` instead")
            return t.kind, "one_minus"
        return t.kind, "plain"

    def check_target(self, role: str, kind: str, a: ast.Assignment) -> None:
        """A target the role's optimizer does not have is an error (set `optimizer = ...` first)."""
        opt = optimizer_of(self.ir.optimizer(role))
        if kind not in opt.all_targets():
            raise self.error(
                a.target.loc,
                f"role '{role}' uses optimizer {opt.name}, which has no target '{kind}'",
                f"{opt.name} targets: {', '.join(opt.all_targets() + tuple(opt.all_settings()))}",
            )

    def setting(self, role: str, a: ast.Assignment, head: str) -> None:
        """`optimizer = muon`, `decay = independent`, `nesterov = true`, `adjust_lr = original`: word values."""
        name = a.target.kind
        word = a.value.id if isinstance(a.value, ast.Name) else None
        opt = optimizer_of(self.ir.optimizer(role))
        allowed = tuple(OPTIMIZERS) if name == "optimizer" else opt.all_settings().get(name)
        if allowed is None:
            raise self.error(
                a.target.loc,
                f"role '{role}' uses optimizer {opt.name}, which has no setting '{name}'",
                f"{opt.name} settings: {', '.join(('optimizer',) + tuple(opt.all_settings()))}",
            )
        if a.op != "=" or word not in allowed:
            raise self.error(
                a.value.loc if a.op == "=" else a.loc,
                f"`{name}` takes one of {', '.join(allowed)}" + (f", not '{word}'" if word else ""),
                (did_you_mean(word, allowed) if word else None) or f"write e.g. `{name} = {allowed[0]}`",
            )
        settings = self.ir.settings.setdefault(role, {})
        origin = self.origin(a.loc, head)
        if name == "optimizer":
            self.switch_optimizer(role, word, a.loc, origin)
        elif name == "decay" and word != self.ir.decay(role):
            self.switch_decay(role, word, origin)
        settings[name] = word

    def switch_optimizer(self, role: str, name: str, loc: ast.Loc, origin: Origin) -> None:
        """A role changes optimizer: targets in `carry` keep their rules, the others take the new defaults."""
        new = optimizer_of(name)
        if new.matrices_only and self.ir.width_class(role) != "hidden":
            raise self.error(
                loc,
                f"{name} orthogonalises hidden weight matrices; role '{role}' ({self.ir.role_table[role].kind}) "
                "cannot use it",
                "give embeddings, the readout, norms and biases adamw or sgd (e.g. `role hidden: optimizer = muon`)",
            )
        if name == self.ir.optimizer(role):
            return
        rules = self.ir.roles.setdefault(role, {})
        kept = {k: r for k, r in rules.items() if k in COMMON_TARGETS or k in new.carry}
        for kind, value in new.defaults.items():
            kept[kind] = Rule(sympy.Rational(value), (origin,))
        self.ir.roles[role] = kept
        settings = self.ir.settings.setdefault(role, {})
        decay = settings.get("decay", DECAY_CONVENTIONS[0])
        settings.clear()
        settings.update({k: v[0] for k, v in new.all_settings().items()}, decay=decay, optimizer=name)

    def switch_decay(self, role: str, decay: str, origin: Origin) -> None:
        """Rewrite the inherited weight decay into the other convention so the per-step shrink is unchanged:
        independent = lr * coupled."""
        rules = self.ir.roles.setdefault(role, {})
        if "weight_decay" not in rules or "lr" not in rules:
            return  # nothing to translate yet (a root file choosing its convention before its rules)
        wd, lr = rules["weight_decay"], rules["lr"].expr
        expr = wd.expr * lr if decay == "independent" else wd.expr / lr
        rules["weight_decay"] = Rule(expr, wd.origins + (origin,))

    def assign(
        self, role: str, kind: str, transform: str, a: ast.Assignment, value: sympy.Expr, spec: int, head: str
    ) -> None:
        key = (role, kind)
        rules = self.ir.roles.setdefault(role, {})
        prev = rules.get(kind)
        if a.op == "=":
            if key in self.assigned and self.assigned[key][1] >= spec:
                raise self.error(
                    a.loc,
                    f"duplicate definition of {kind} for role '{role}' (first at line {self.assigned[key][0].line})",
                    "use `*=` to refine it, or remove one",
                )
            self.assigned[key] = (a.loc, spec)
        elif prev is None:
            raise self.error(
                a.loc,
                f"`{a.target} *=` on role '{role}' has nothing to multiply",
                f"no parent file defines {kind} for '{role}'; use `=`",
            )
        origins = (prev.origins if (prev and a.op == "*=") else ()) + (self.origin(a.loc, head),)
        if transform == "sqrt":
            value = sympy.sqrt(value)
        if transform == "one_minus":
            expr = 1 - value if a.op == "=" else 1 - (1 - prev.expr) * value
        else:
            expr = value if a.op == "=" else prev.expr * value
        rules[kind] = Rule(expr, origins)

    def do_SiteRule(self, s: ast.SiteRule) -> None:
        value = self.convert(s.value, "site rule")
        tunable = sorted(str(x) for x in value.free_symbols if str(x) in self.ir.hps)
        if tunable:
            raise self.error(
                s.value.loc,
                f"forward site multipliers depend on the shape only, but this one uses hp {', '.join(tunable)}",
                "tune a role's forward multiplier with `mult[ROLE]` instead",
            )
        for p in s.sites:
            if p.text not in SITES:
                raise self.error(
                    p.loc,
                    f"unknown forward site '{p.text}'",
                    did_you_mean(p.text, SITES) or f"sites: {', '.join(SITES)}",
                )
            prev = self.ir.sites.get(p.text)
            key = ("site", p.text)
            if s.op == "=":
                if key in self.assigned:
                    raise self.error(
                        p.loc,
                        f"duplicate definition of site '{p.text}' (first at line {self.assigned[key][0].line})",
                        "remove one of them",
                    )
                self.assigned[key] = (p.loc, 2)
                self.ir.sites[p.text] = Rule(value, (self.origin(s.loc),))
            else:
                base = prev if prev is not None else Rule(sympy.Integer(DEFAULT_SITES.get(p.text, 1)), ())
                self.ir.sites[p.text] = Rule(base.expr * value, base.origins + (self.origin(s.loc),))


def resolve(chain: list[ast.RuleFile], params: Mapping[str, str | float] | None = None) -> ParameterisationIR:
    """Fold a root-first chain of files into the IR; `params` overrides `param` values."""
    leaf = chain[-1]
    ir = ParameterisationIR(
        name=leaf.name,
        lineage=tuple(f.name for f in chain),
        paths=tuple(f.path for f in chain),
        sources=tuple(f.source for f in chain),
        header_loc=leaf.name_loc,
    )
    lets: dict[str, sympy.Expr] = {}
    for i, f in enumerate(chain):
        ir.docs = []  # a file's docstring describes that file only; the leaf's is kept
        _FileResolver(ir, f, lets).run()
        if i == 0:
            _complete_root(ir, f)
            ir.root_roles = {r: dict(k) for r, k in ir.roles.items()}
            ir.root_sites = dict(ir.sites)
            ir.root_settings = {r: dict(v) for r, v in ir.settings.items()}
    if params:
        _override_params(ir, params, leaf)
    digest = hashlib.sha256()
    for f in chain:
        digest.update(f.path.rsplit("/", 1)[-1].encode() + b"\0" + f.source.encode() + b"\0")
    for k in sorted(params or {}):
        digest.update(f"{k}={params[k]}".encode())
    ir.source_sha256 = digest.hexdigest()
    return ir


def _complete_root(ir: ParameterisationIR, root: ast.RuleFile) -> None:
    """The root must define every axis and every role's optimizer HPs; sites/mean/mult have defaults."""
    loc = root.name_loc
    missing_axes = [a for a in AXES if a not in ir.axes]
    if missing_axes:
        raise RuleError(
            loc,
            f"root parameterisation '{root.name}' does not declare axis {', '.join(missing_axes)}",
            f"add e.g. `axis {missing_axes[0]} = 64 in [8, 65536]`",
            root.source,
        )
    for role in ir.role_table:
        rules = ir.roles.setdefault(role, {})
        for kind, default in DEFAULT_KINDS.items():
            rules.setdefault(kind, Rule(sympy.Integer(default), ()))
        opt = optimizer_of(ir.optimizer(role))
        settings = ir.settings.setdefault(role, {})
        for name, words in {"optimizer": (opt.name,), **opt.all_settings()}.items():
            settings.setdefault(name, words[0])
        for kind, value in opt.defaults.items():
            if kind not in opt.carry and kind not in ("beta1", "beta2", "eps"):
                rules.setdefault(kind, Rule(sympy.Rational(value), ()))
        missing = [k for k in opt.all_targets() if k not in rules]
        if missing:
            raise RuleError(
                loc,
                f"role '{role}' has no rule for {', '.join(missing)} in root file '{root.name}'",
                f"add `role *: {missing[0]} = ...` to the root file",
                root.source,
            )
    for site, default in DEFAULT_SITES.items():
        ir.sites.setdefault(site, Rule(sympy.Integer(default), ()))
    if "attn.scale" not in ir.sites:
        ir.sites["attn.scale"] = Rule(1 / sympy.sqrt(builtin_names()["d_head"]), ())


def _override_params(ir: ParameterisationIR, params: Mapping[str, str | float], leaf: ast.RuleFile) -> None:
    for name, raw in params.items():
        if name not in ir.params:
            raise RuleError(
                leaf.name_loc,
                f"'{ir.name}' has no param '{name}'",
                did_you_mean(name, ir.params) or f"params: {', '.join(ir.params) or 'none'}",
                leaf.source,
            )
        q = ir.params[name]
        try:
            value = bounded_rational(str(raw))
        except ValueError as exc:
            raise RuleError(leaf.name_loc, f"param {name}: {exc}", "e.g. alpha=1/2", leaf.source) from None
        if not (q.low <= value <= q.high):
            raise RuleError(
                q.loc, f"param {name}={value} lies outside its declared range [{q.low}, {q.high}]", None, leaf.source
            )
        ir.params[name] = Quantity(name, value, q.low, q.high, None, q.loc)
