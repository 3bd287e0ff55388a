"""Canonical formatting of rule files (`scalec fmt`): the output re-parses to the same AST, comments kept."""

from __future__ import annotations

import re

from scalec.dsl import ast
from scalec.dsl.errors import RuleError

INDENT = "  "
MAX_LINE = 100

# Binding strength of each expression form (higher binds tighter).
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4, "atom": 5}


def format_expr(e: ast.Expr) -> str:
    """Print an expression with the fewest parentheses that keep its tree."""
    return _fmt(e, 0)


def _prec(e: ast.Expr) -> int:
    if isinstance(e, ast.BinOp):
        return _PREC[e.op]
    if isinstance(e, ast.Neg):
        return _PREC["neg"]
    return _PREC["atom"]


def _wrap(e: ast.Expr, min_prec: int) -> str:
    text = _fmt(e, min_prec)
    return f"({text})" if _prec(e) < min_prec else text


def _fmt(e: ast.Expr, min_prec: int) -> str:
    if isinstance(e, ast.Num):
        return e.text
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Call):
        return f"{e.func}({', '.join(_fmt(a, 0) for a in e.args)})"
    if isinstance(e, ast.Neg):
        return "-" + _wrap(e.operand, _PREC["neg"])
    assert isinstance(e, ast.BinOp)
    if e.op == "^":
        return f"{_wrap(e.left, _PREC['atom'])}^{_wrap(e.right, _PREC['neg'])}"
    p = _PREC[e.op]
    left, right = _wrap(e.left, p), _wrap(e.right, p + 1)
    left_num = isinstance(e.left, ast.Num) or (isinstance(e.left, ast.Neg) and isinstance(e.left.operand, ast.Num))
    if e.op == "/" and left_num and isinstance(e.right, ast.Num):
        return f"{left}/{right}"  # a rational literal such as 1/2
    return f"{left} {e.op} {right}"


def _range(r: ast.Range | None) -> str:
    return f" in [{format_expr(r.low)}, {format_expr(r.high)}]" if r else ""


def _patterns(ps: tuple[ast.Pattern, ...], sep: str = ", ") -> str:
    return sep.join(p.text for p in ps)


def format_statement(s: ast.Statement) -> list[str]:
    """The lines of one statement (without indentation of the file body)."""
    if isinstance(s, ast.Docstring):
        return [f'"{s.text}"']
    if isinstance(s, ast.Cite):
        return [f'cite "{s.text}"']
    if isinstance(s, ast.AxisDecl):
        return [f"axis {s.name} = {format_expr(s.base)}{_range(s.range)}"]
    if isinstance(s, ast.HPDecl):
        scale = f" {s.scale}" if s.scale else ""
        knots = f" knots {s.knots}" if s.knots is not None else ""
        return [f"hp {s.name} = {format_expr(s.default)}{_range(s.range)}{scale}{knots}"]
    if isinstance(s, ast.ParamDecl):
        return [f"param {s.name} = {format_expr(s.value)}{_range(s.range)}"]
    if isinstance(s, ast.LetDecl):
        return [f"let {s.name} = {format_expr(s.value)}"]
    if isinstance(s, ast.GroupDecl):
        return [f"group {s.name} = {_patterns(s.patterns, ' | ')}"]
    if isinstance(s, ast.SiteRule):
        return [f"site {_patterns(s.sites)} {s.op} {format_expr(s.value)}"]
    if isinstance(s, ast.RoleDecl):
        return [f"new role {s.name}: {s.kind}" + (" in blocks" if s.in_blocks else "")]
    if isinstance(s, ast.ExpectDecl):
        return ["expect " + ";  ".join(f"{e.area}: {e.level}" for e in s.items)]
    assert isinstance(s, ast.RoleRule)
    head = f"role {_patterns(s.patterns)}:"
    parts = [f"{a.target} {a.op} {format_expr(a.value)}" for a in s.assignments]
    one_line = f"{head} {';  '.join(parts)}"
    if len(one_line) + len(INDENT) <= MAX_LINE:
        return [one_line]
    return [head] + [f"{INDENT * 2}{p}{';' if i < len(parts) - 1 else ''}" for i, p in enumerate(parts)]


_COMMENT = re.compile(r'("[^"\n]*")|(#[^\n]*)')


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """Map line -> (comment text, trailing?) for every `#` comment outside strings."""
    found: dict[int, tuple[str, bool]] = {}
    for lineno, line in enumerate(source.splitlines(), start=1):
        for m in _COMMENT.finditer(line):
            if m.group(2):
                trailing = bool(line[: m.start()].strip())
                found[lineno] = (m.group(2).rstrip(), trailing)
                break
    return found


def format_file(f: ast.RuleFile) -> str:
    """Format a parsed file; comments and single blank lines of the original source are preserved."""
    comments = _comments(f.source)
    blank = {i for i, line in enumerate(f.source.splitlines(), start=1) if not line.strip()}
    out: list[str] = []
    used: set[int] = set()
    last_line = 0
    in_body = False

    def leading(upto: int) -> None:
        nonlocal last_line
        for ln in range(last_line + 1, upto):
            if ln in comments and not comments[ln][1]:
                if out and (ln - 1) in blank and out[-1] != "":
                    out.append("")
                out.append((INDENT if in_body else "") + comments[ln][0])
                used.add(ln)
            last_line = ln

    def trailing(first: int, last: int, lines: list[str]) -> list[str]:
        inside = [ln for ln in range(first, last + 1) if ln in comments]
        notes = [comments[ln][0] for ln in inside if comments[ln][1]]
        used.update(ln for ln in inside if comments[ln][1])
        # a whole-line comment between a statement's own lines moves just above the statement
        for ln in inside:
            if not comments[ln][1]:
                lines = [INDENT + comments[ln][0], *lines]
                used.add(ln)
        if notes:
            lines = lines[:-1] + [f"{lines[-1]}  {'  '.join(notes)}"]
        return lines

    header = f"parameterisation {f.name}" + (f" extends {f.parent}" if f.parent else "")
    hline = f.name_loc.line or 1
    leading(hline)
    out.extend(trailing(hline, hline, [header]))
    in_body = True
    last_line = max(last_line, hline)
    starts = [s.loc.line for s in f.statements]
    for i, s in enumerate(f.statements):
        start = s.loc.line or (last_line + 1)
        nxt = starts[i + 1] if i + 1 < len(starts) and starts[i + 1] else start + 1
        end = max(start, (s.loc.end_line or start), nxt - 1 if nxt - 1 >= start else start)
        # the statement's own lines end where the next statement's leading comments and blank lines begin
        while end > start and (end in blank or (end in comments and not comments[end][1])):
            end -= 1
        if s.loc.end_line:
            end = max(start, min(end, s.loc.end_line))
        if any(ln in blank for ln in range(last_line + 1, start)) and not any(
            ln in comments and not comments[ln][1] for ln in range(last_line + 1, start)
        ):
            out.append("")
        leading(start)
        if (start - 1) in blank and out and out[-1] != "":
            out.append("")
        lines = [INDENT + ln if not ln.startswith(INDENT * 2) else INDENT + ln for ln in format_statement(s)]
        out.extend(trailing(start, end, lines))
        last_line = max(last_line, end)
    # comments after the last statement
    for ln in sorted(comments):
        if ln not in used and ln > last_line:
            out.append(INDENT + comments[ln][0])
    lost = sorted(set(comments) - used)
    if lost:  # never drop a comment silently
        loc = ast.Loc(f.name_loc.path, lost[0], 1, lost[0], 1)
        raise RuleError(loc, "the formatter would drop this comment", "move it onto its own line", f.source)
    text = "\n".join(out).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)
