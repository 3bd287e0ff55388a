"""Values as users write them, for every command and the Python API: numbers, counts, NAME=VALUE lists.

Numbers are literals (`256`, `1e-3`, `0.5`, `16M`) joined by `+ - * / ^` (or `**`) and parentheses, evaluated
exactly with Fractions from a parsed syntax tree (no eval). Literals may carry a decimal suffix k, M, G, B
(billion) or T. Bounds keep every value instant: at most 100 characters, exponents of at most 1024 in
magnitude, and results of magnitude at most 2^128 (the float32 range the optimizer keeps) and, when non-zero,
at least 2^-1022. `NAME=VALUE` lists follow one comma rule: a comma starts a new assignment only when the text
after it reads `NAME=`; otherwise it belongs to the value (`eta=0.001,0.01` is one HP with two values).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable
from fractions import Fraction

from scalec.errors import ScalecError

MAX_CHARS = 100
MAX_EXPONENT = 1024
MAX_MAGNITUDE = 2**128
MIN_MAGNITUDE = Fraction(1, 2**1022)
_WORK_BITS = 4096  # intermediate results stay below 2^4096, so exact arithmetic stays instant
SUFFIXES = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_SUFFIXED = re.compile(r"(?<![\w.])((?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?|\d[\d_]*\.)([kKMGBT])(?![\w.])")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.*]*(?:\[[^\]=,]*\])?")
_STARTS_ASSIGNMENT = re.compile(rf"\s*{_NAME.pattern}\s*=")
EXAMPLES = "256, 2^14, 16M, 1e-3, 1/2"
_EXAMPLE_ASSIGNMENT = {"--hp": "eta=2^-7", "--lr": "eta=2^-7", "--param": "alpha=1/2", "--base": "n=256"}

Number = Fraction | float


class ArgumentValueError(ScalecError, ValueError):
    """A value that is not a number, breaks a bound, or has the wrong kind (one line, names the option)."""


def _fail(what: str, text: str, reason: str) -> ArgumentValueError:
    label = f"{what} {text!r}" if what else repr(text)
    return ArgumentValueError(f"error: {label} {reason}")


def _check_magnitude(x: Number, limit: Number = 2**_WORK_BITS) -> Number:
    if isinstance(x, float) and not math.isfinite(x):
        raise _Refused("is not a finite number")
    if abs(x) > limit:
        raise _Refused("is too large (magnitude at most 2^128)")
    if x and abs(x) < MIN_MAGNITUDE:
        raise _Refused("is too small (non-zero magnitude at least 2^-1022)")
    return x


class _Refused(Exception):
    """Internal: why an expression is refused (turned into ArgumentValueError with the option's name)."""


def _literal(node: ast.Constant, source: str) -> Number:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused(f"is not a number (examples: {EXAMPLES})")
    if isinstance(value, float):  # exact decimal from the text: 0.1 is 1/10, 1e-400 is not silently 0
        text = (ast.get_source_segment(source, node) or repr(value)).replace("_", "")
        exponent = re.search(r"[eE]([+-]?\d+)$", text)
        if exponent and abs(int(exponent.group(1))) > _WORK_BITS:
            raise _Refused("is too large (magnitude at most 2^128)" if int(exponent.group(1)) > 0 else "is too small")
        return _check_magnitude(Fraction(text))
    return _check_magnitude(Fraction(value))


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        e = int(exponent)
        if abs(e) > MAX_EXPONENT:
            raise _Refused(f"has the exponent {e}, beyond the bound of {MAX_EXPONENT} in magnitude")
        if base == 0:
            if e < 0:
                raise _Refused("divides by zero")
            return Fraction(0) if e else Fraction(1)
        if abs(base) != 1 and abs(e * math.log2(abs(base))) > _WORK_BITS:
            raise _Refused("is too large (magnitude at most 2^128)" if abs(base) > 1 else "is too small")
        return base**e
    if abs(exponent) > MAX_EXPONENT:
        raise _Refused(f"has the exponent {float(exponent):g}, beyond the bound of {MAX_EXPONENT} in magnitude")
    if base < 0:
        raise _Refused("raises a negative number to a fractional power")
    if base == 0:
        if exponent < 0:
            raise _Refused("divides by zero")
        return Fraction(0)
    if abs(float(exponent) * math.log2(float(base))) > 1022:
        raise _Refused("is out of the float range")
    return float(base) ** float(exponent)


def _evaluate(node: ast.AST, source: str) -> Number:
    if isinstance(node, ast.Constant):
        return _literal(node, source)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _evaluate(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
        left, right = _evaluate(node.left, source), _evaluate(node.right, source)
        if isinstance(node.op, ast.Pow):
            return _check_magnitude(_power(left, right))
        if isinstance(node.op, ast.Div):
            if right == 0:
                raise _Refused("divides by zero")
            return _check_magnitude(left / right)
        if isinstance(node.op, ast.Add):
            return _check_magnitude(left + right)
        if isinstance(node.op, ast.Sub):
            return _check_magnitude(left - right)
        return _check_magnitude(left * right)
    raise _Refused(f"is not a number (examples: {EXAMPLES})")


def evaluate(text: str) -> Number:
    """The exact value of a number expression (Fraction; float once a fractional power enters); raises
    ValueError with the reason."""
    raw = str(text).strip()
    if not raw:
        raise ValueError("is empty")
    if len(raw) > MAX_CHARS:
        raise ValueError(f"is longer than {MAX_CHARS} characters")
    source = _SUFFIXED.sub(lambda m: f"({m.group(1)}*{SUFFIXES[m.group(2)]})", raw).replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ValueError(f"is not a number (examples: {EXAMPLES})") from None
    try:
        value = _evaluate(tree.body, source)
        return _check_magnitude(value, MAX_MAGNITUDE)
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except (RecursionError, OverflowError, ZeroDivisionError):
        raise ValueError("is out of range") from None


def parse_exact(text: str, what: str = "") -> Fraction:
    """An exact rational (`1/2`, `2^-1`, `0.75`); a value needing a fractional power is refused."""
    value = _number(text, what)
    if not isinstance(value, Fraction):
        raise _fail(what, str(text), "is not an exact rational; write it as a fraction such as 1/2")
    return value


def _number(text: str | float | int, what: str) -> Number:
    if isinstance(text, bool):
        raise _fail(what, str(text), f"is not a number (examples: {EXAMPLES})")
    if isinstance(text, (int, float, Fraction)):
        text = repr(text) if isinstance(text, float) else str(text)
        if text in ("nan", "inf", "-inf"):
            raise _fail(what, text, "is not a finite number")
    if not isinstance(text, str):
        raise _fail(what, str(text), f"is not a number (examples: {EXAMPLES})")
    try:
        return evaluate(text)
    except ValueError as exc:
        raise _fail(what, text, str(exc)) from None


def parse_number(text: str | float | int, what: str = "", *, positive: bool = False) -> float:
    """A finite float from `2^-7`, `1e-3`, `16M`, `3/4`, ...; `positive` refuses values <= 0."""
    value = _number(text, what)
    if positive and not value > 0:
        raise _fail(what, str(text), "must be positive")
    return float(value)


def parse_int(text: str | float | int, what: str = "", *, minimum: int | None = 1) -> int:
    """A whole number (`65536`, `2^16`, `16M`, `1.5G`) of at least `minimum` (None: any)."""
    value = _number(text, what)
    if value != int(value):
        raise _fail(what, str(text), f"is not a whole number (examples: {EXAMPLES})")
    if minimum is not None and value < minimum:
        raise _fail(what, str(text), f"must be at least {minimum}")
    return int(value)


def parse_ints(text: str, what: str, *, minimum: int = 1, at_least: int = 1) -> tuple[int, ...]:
    """Comma-separated whole numbers (`64,128,2^8`), at least `at_least` of them."""
    items = [v.strip() for v in str(text).split(",")]
    if "" in items and len(items) > 1:
        raise _fail(what, str(text), "has an empty item between commas; remove the extra comma")
    values = tuple(parse_int(v, what, minimum=minimum) for v in items if v)
    if len(values) < at_least:
        raise _fail(what, str(text), f"give at least {at_least} comma-separated values, e.g. {what} 64,128,256")
    return values


def split_assignments(items: Iterable[str] | None, what: str) -> list[tuple[str, str]]:
    """`NAME=VALUE` items (repeatable; comma-joined only where the next part reads `NAME=`) as (name, value)
    pairs, in order; a name given twice is an error."""
    pairs: list[tuple[str, str]] = []
    for item in items or []:
        parts: list[str] = []
        for piece in str(item).split(","):
            if parts and not _STARTS_ASSIGNMENT.match(piece):
                parts[-1] += "," + piece
            else:
                parts.append(piece)
        for part in parts:
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not _NAME.fullmatch(name) or not value:
                example = _EXAMPLE_ASSIGNMENT.get(what, "n=64")
                raise ArgumentValueError(f"error: {what} '{part.strip()}' is not NAME=VALUE (e.g. {what} {example})")
            if name in (n for n, _ in pairs):
                raise ArgumentValueError(f"error: {what} {name} is given twice; give each name once")
            pairs.append((name, value))
    return pairs


def parse_assignments(items: Iterable[str] | None, what: str) -> dict[str, str]:
    """`split_assignments` as a dict of raw value texts."""
    return dict(split_assignments(items, what))


def parse_params(items: Iterable[str] | None, what: str = "--param") -> dict[str, str]:
    """Rule-file params (`alpha=1/2`, `alpha=2^-1`) as exact rationals in canonical text (`"1/2"`)."""
    return {name: str(parse_exact(value, f"{what} {name}")) for name, value in split_assignments(items, what)}


def parse_base(items: Iterable[str] | None, what: str = "--base") -> dict[str, int]:
    """Base-shape overrides (`n=256`, `B=2^20`): whole, positive numbers by axis name."""
    return {name: parse_int(value, f"{what} {name}") for name, value in split_assignments(items, what)}


# Shape-spec keys (`--base-shape n=64,L=2`) -> TrainConfig field.
SHAPE_KEYS = {
    "n": "width",
    "width": "width",
    "L": "depth",
    "depth": "depth",
    "B": "batch",
    "batch": "batch",
    "D": "duration",
    "duration": "duration",
}


def parse_shape(text: str, what: str) -> dict[str, int]:
    """`n=64,L=2` (keys n L B D or width depth batch duration; values like 2^12, 2M) -> TrainConfig fields."""
    out: dict[str, int] = {}
    for key, value in split_assignments([text], what):
        if key not in SHAPE_KEYS:
            raise ArgumentValueError(
                f"error: {what} '{text}': expected AXIS=VALUE pairs with AXIS in n, L, B, D, e.g. {what} n=64,L=2"
            )
        out[SHAPE_KEYS[key]] = parse_int(value, f"{what} {key}")
    return out


def parse_sizes(text: str, what: str = "--sizes") -> list[int]:
    """At least two comma-separated sizes (`64,128,2^8`, `1M,2M`)."""
    return list(parse_ints(text, what, at_least=2))
