"""Parse `.scale` text into the typed AST (dsl/ast.py) with located, compiler-style errors."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from scalec.dsl import ast
from scalec.dsl.errors import RuleError, did_you_mean

# Bounds that keep every input cheap (README "Limits"): sympy never sees a number it cannot handle quickly.
MAX_FILE_CHARS = 200_000
MAX_DEPTH = 100  # nesting of an expression (parentheses, operators, calls)
MAX_NUMBER_CHARS = 64  # characters in one number literal
MAX_DECIMAL_EXPONENT = 400  # |e| in a literal such as 1e-16
MAX_KNOTS = 64  # knots of one depth profile (`hp NAME = ... knots K`)

KEYWORDS = (
    "parameterisation",
    "extends",
    "cite",
    "axis",
    "hp",
    "param",
    "let",
    "group",
    "role",
    "site",
    "knots",
    "new",
    "expect",
)

_TERMINAL_NAMES = {
    "NAME": "a name",
    "DOTTED": "a dotted name",
    "GLOB": "a role pattern",
    "NUMBER": "a number",
    "STRING": 'a "string"',
    "ASSIGN_OP": "'=' or '*='",
    "SCALE": "'log' or 'linear'",
    "$END": "end of file",
}


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files("scalec.dsl").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)


def parse_file(path: str | Path) -> ast.RuleFile:
    """Read and parse a rule file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(
            ast.Loc(str(path), 0, 0), f"no such rule file '{path}'", "run `scalec rules` to list the bundled rules"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(ast.Loc(str(path), 0, 0), f"cannot read rule file: {exc}") from None
    return parse(text, str(path))


def parse(text: str, path: str = "<string>") -> ast.RuleFile:
    """Parse rule-file text; raises RuleError (and nothing else) on any malformed input."""
    if len(text) > MAX_FILE_CHARS:
        raise RuleError(
            ast.Loc(path, 1, 1),
            f"rule file has {len(text)} characters; the limit is {MAX_FILE_CHARS}",
            "split it with `extends`",
        )
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, path) from None
    except LarkError as exc:  # pragma: no cover - defensive: lark's other errors
        raise RuleError(ast.Loc(path, 1, 1), f"cannot parse: {exc}", source=text) from None
    _check_depth(tree, path, text)
    try:
        return _ToAst(path, text).transform(tree)
    except RuleError:
        raise
    except LarkError as exc:
        inner = getattr(exc, "orig_exc", exc)
        if isinstance(inner, RuleError):
            raise inner from None
        raise RuleError(ast.Loc(path, 1, 1), f"cannot parse: {inner}", source=text) from None


def _check_depth(tree: Tree, path: str, text: str) -> None:
    """Refuse expressions nested deeper than MAX_DEPTH (walked without recursion, before the transformer)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH + 2:  # start -> statement -> expression
            raise RuleError(
                _loc(path, node.meta),
                f"expression nested deeper than {MAX_DEPTH} levels",
                "split it into `let` definitions (a long sum or product nests one level per term)",
                text,
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _describe_expected(expected: set[str]) -> str:
    parser = _lark()
    names = []
    for term in sorted(expected):
        if term in _TERMINAL_NAMES:
            names.append(_TERMINAL_NAMES[term])
            continue
        try:
            pattern = parser.get_terminal(term).pattern
        except KeyError:
            names.append(term)
            continue
        if pattern.type == "str":
            names.append(f"'{pattern.value}'")
        else:
            names.append(term.lower())
    names = sorted(set(names), key=lambda s: (s.startswith("'") is False, s))
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


def _expected_words(expected: set[str]) -> list[str]:
    """Literal words the parser would have accepted (for did-you-mean hints)."""
    words = ["log", "linear"] if "SCALE" in expected else []
    parser = _lark()
    for term in expected:
        try:
            pattern = parser.get_terminal(term).pattern
        except KeyError:
            continue
        if pattern.type == "str" and pattern.value.isidentifier():
            words.append(pattern.value)
    return words


def _syntax_error(exc: UnexpectedInput, text: str, path: str) -> RuleError:
    line = getattr(exc, "line", 1) or 1
    col = getattr(exc, "column", 1) or 1
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else "?"
        hint = f"expected {_describe_expected(set(exc.allowed or ()))}" if exc.allowed else None
        return RuleError(ast.Loc(path, line, col), f"unexpected character {char!r}", hint, text)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        expected = set(getattr(exc, "expected", ()) or ())
        lines = text.splitlines() or [""]
        last = len(lines)
        loc = ast.Loc(path, last, len(lines[-1]) + 1)
        return RuleError(loc, "unexpected end of file", f"expected {_describe_expected(expected)}", text)
    assert isinstance(exc, UnexpectedToken)
    tok: Token = exc.token
    expected = set(exc.expected or ())
    hint = f"expected {_describe_expected(expected)}"
    if tok.type == "NAME":
        words = _expected_words(expected) or list(KEYWORDS)
        dym = did_you_mean(str(tok), words)
        if dym:
            hint = f"{dym} ({hint})"
    end_col = tok.end_column or col + len(str(tok))
    loc = ast.Loc(path, line, col, tok.end_line or line, end_col)
    shown = str(tok) if tok.type != "$END" else "end of file"
    return RuleError(loc, f"unexpected {shown!r}", hint, text)


def _loc(path: str, meta_or_tok) -> ast.Loc:
    line = getattr(meta_or_tok, "line", 0) or 0
    col = getattr(meta_or_tok, "column", 0) or 0
    return ast.Loc(
        path, line, col, getattr(meta_or_tok, "end_line", line) or line, getattr(meta_or_tok, "end_column", col) or col
    )


@v_args(meta=True, inline=True)
class _ToAst(Transformer):
    """Turn the lark tree into AST nodes in one pass."""

    def __init__(self, path: str, source: str):
        super().__init__()
        self.path = path
        self.source = source

    def L(self, x) -> ast.Loc:  # noqa: N802 - short helper name
        return _loc(self.path, x)

    # file ---------------------------------------------------------------------------------------
    def start(self, meta, header, *statements):
        name_tok, parent_tok = header
        return ast.RuleFile(
            name=str(name_tok),
            parent=str(parent_tok) if parent_tok is not None else None,
            statements=tuple(statements),
            path=self.path,
            source=self.source,
            name_loc=self.L(name_tok),
            parent_loc=self.L(parent_tok) if parent_tok is not None else ast.NOWHERE,
        )

    def header(self, meta, name, parent):
        return (name, parent)

    # statements ---------------------------------------------------------------------------------
    def docstring(self, meta, s):
        return ast.Docstring(str(s)[1:-1], self.L(meta))

    def cite(self, meta, s):
        return ast.Cite(str(s)[1:-1], self.L(meta))

    def axis_decl(self, meta, name, base, rng):
        return ast.AxisDecl(str(name), base, rng, self.L(name))

    def hp_decl(self, meta, name, default, rng, scale, knots):
        scale = str(scale) if scale is not None else None
        return ast.HPDecl(str(name), default, rng, scale, knots=knots, loc=self.L(name))

    def knots(self, meta, tok):
        if not str(tok).isdigit() or int(tok) < 1 or int(tok) > MAX_KNOTS:
            raise RuleError(
                self.L(tok),
                f"a depth profile takes a whole number of knots from 1 to {MAX_KNOTS}, not {str(tok)[:24]}",
                "e.g. `knots 3` (knots at relative depths 0, 1/2, 1); `knots 1` is one constant",
                self.source,
            )
        return int(tok)

    def param_decl(self, meta, name, value, rng):
        return ast.ParamDecl(str(name), value, rng, self.L(name))

    def let_decl(self, meta, name, value):
        return ast.LetDecl(str(name), value, self.L(name))

    def group_decl(self, meta, name, *patterns):
        return ast.GroupDecl(str(name), tuple(patterns), self.L(name))

    def role_rule(self, meta, *items):
        patterns = tuple(i for i in items if isinstance(i, ast.Pattern))
        assignments = tuple(i for i in items if isinstance(i, ast.Assignment))
        return ast.RoleRule(patterns, assignments, self.L(meta))

    def site_rule(self, meta, *items):
        *sites, op, value = items
        return ast.SiteRule(tuple(ast.Pattern(str(s), self.L(s)) for s in sites), str(op), value, self.L(meta))

    def role_decl(self, meta, name, kind, in_blocks):
        return ast.RoleDecl(str(name), str(kind), in_blocks is not None, self.L(name), self.L(kind))

    def role_name(self, meta, tok):
        return tok

    def in_blocks(self, meta):
        return True

    def expect_decl(self, meta, *items):
        return ast.ExpectDecl(tuple(items), self.L(meta))

    def expectation(self, meta, area, level):
        return ast.Expect(str(area), str(level), self.L(area), self.L(level))

    def assignment(self, meta, target, op, value):
        return ast.Assignment(target, str(op), value, self.L(meta))

    def kind_target(self, meta, name):
        return ast.Target(str(name), False, self.L(name))

    def one_minus_target(self, meta, name):
        return ast.Target(str(name), True, self.L(meta))

    def range(self, meta, low, high):
        return ast.Range(low, high, self.L(meta))

    def pattern(self, meta, tok):
        return ast.Pattern(str(tok), self.L(tok))

    # expressions --------------------------------------------------------------------------------
    def number(self, meta, tok):
        text, loc = str(tok), self.L(tok)
        mantissa, _, exponent = text.lower().partition("e")
        if len(text) > MAX_NUMBER_CHARS or (exponent and abs(int(exponent)) > MAX_DECIMAL_EXPONENT):
            raise RuleError(
                loc,
                f"number literal {text[:24]}{'...' if len(text) > 24 else ''} is out of range",
                f"literals have at most {MAX_NUMBER_CHARS} characters and a decimal exponent within "
                f"+-{MAX_DECIMAL_EXPONENT}",
                self.source,
            )
        return ast.Num(text, loc)

    def name(self, meta, tok):
        return ast.Name(str(tok), self.L(tok))

    def call(self, meta, func, *args):
        return ast.Call(str(func), tuple(args), self.L(meta))

    def neg(self, meta, operand):
        return ast.Neg(operand, self.L(meta))

    def _bin(op):  # noqa: N805 - factory used at class creation
        def method(self, meta, left, right):
            return ast.BinOp(op, left, right, self.L(meta))

        return method

    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    pow = _bin("^")
