"""A small exact linear-programme solver over the rationals (two-phase simplex, Bland's rule).

`scalec derive` needs proofs, not floats: every optimum it reports is a vertex computed in `Fraction` arithmetic and
re-checked against every constraint before it is used.  (sympy's `linprog` returned points that violate their own
constraints on degenerate problems of this shape, hence this file.)  The problems are tiny (tens of variables).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


class Infeasible(Exception):
    """The constraints admit no point."""


class Unbounded(Exception):
    """The objective decreases without bound."""


def minimise(
    cost: Sequence[Fraction], rows: Sequence[tuple[Sequence[Fraction], str, Fraction]]
) -> tuple[Fraction, list[Fraction]]:
    """min cost.x over free variables x subject to rows (coeffs, op, rhs), op one of "<=", ">=", "==".

    Returns (value, x); raises Infeasible or Unbounded.  The point is checked against every row before return."""
    n = len(cost)
    # Free variables as x = u - v with u, v >= 0; each row brought to rhs >= 0.
    tableau: list[list[Fraction]] = []
    basis: list[int] = []
    kinds: list[str] = []
    for coeffs, op, rhs in rows:
        coeffs = [Fraction(c) for c in coeffs] + [-Fraction(c) for c in coeffs]
        rhs = Fraction(rhs)
        if rhs < 0:
            coeffs, rhs, op = [-c for c in coeffs], -rhs, {"<=": ">=", ">=": "<=", "==": "=="}[op]
        tableau.append(coeffs + [rhs])
        kinds.append(op)
    m = len(tableau)
    slack_of = {i: None for i in range(m)}
    extra = 0
    for i, op in enumerate(kinds):  # slack (+1 for <=, -1 for >=)
        if op != "==":
            slack_of[i] = 2 * n + extra
            extra += 1
    n_slack = extra
    artificial: list[int] = []
    for i, op in enumerate(kinds):
        if op != "<=":
            artificial.append(i)
    width = 2 * n + n_slack + len(artificial)
    full = []
    for i, row in enumerate(tableau):
        body = row[:-1] + [Fraction(0)] * (n_slack + len(artificial))
        if slack_of[i] is not None:
            body[slack_of[i]] = Fraction(1 if kinds[i] == "<=" else -1)
        full.append(body + [row[-1]])
    for k, i in enumerate(artificial):
        col = 2 * n + n_slack + k
        full[i][col] = Fraction(1)
    for i in range(m):
        basis.append(slack_of[i] if kinds[i] == "<=" else 2 * n + n_slack + artificial.index(i))
    first_art = 2 * n + n_slack
    # Phase 1: minimise the artificials.
    phase1 = [Fraction(0)] * first_art + [Fraction(1)] * len(artificial)
    _run(full, basis, phase1, allowed=width)
    if sum(full[i][-1] for i in range(m) if basis[i] >= first_art) != 0:
        raise Infeasible
    _drive_out(full, basis, first_art)
    # Phase 2 over the original columns only.
    cost2 = [Fraction(c) for c in cost] + [-Fraction(c) for c in cost] + [Fraction(0)] * (width - 2 * n)
    _run(full, basis, cost2, allowed=first_art)
    values = [Fraction(0)] * width
    for i, b in enumerate(basis):
        if b is not None:
            values[b] = full[i][-1]
    x = [values[j] - values[n + j] for j in range(n)]
    _verify(rows, x)
    return sum((Fraction(c) * v for c, v in zip(cost, x, strict=True)), Fraction(0)), x


def _run(t: list[list[Fraction]], basis: list, cost: list[Fraction], allowed: int) -> None:
    """Simplex iterations with Bland's rule (no cycling) on columns < allowed."""
    m = len(t)
    while True:
        in_basis = set(basis)
        enter = None
        for j in range(allowed):
            if j in in_basis:
                continue
            r = cost[j] - sum(
                (cost[basis[i]] * t[i][j] for i in range(m) if basis[i] is not None and t[i][j]), Fraction(0)
            )
            if r < 0:
                enter = j
                break
        if enter is None:
            return
        leave, best = None, None
        for i in range(m):
            if basis[i] is not None and t[i][enter] > 0:
                ratio = t[i][-1] / t[i][enter]
                if best is None or ratio < best or (ratio == best and basis[i] < basis[leave]):
                    leave, best = i, ratio
        if leave is None:
            raise Unbounded
        _pivot(t, leave, enter)
        basis[leave] = enter


def _pivot(t: list[list[Fraction]], row: int, col: int) -> None:
    """Gauss-Jordan pivot on (row, col), touching only the pivot row's nonzero columns (the tableau is sparse)."""
    p = t[row][col]
    pivot_row = t[row] if p == 1 else [v / p if v else v for v in t[row]]
    t[row] = pivot_row
    nonzero = [(j, v) for j, v in enumerate(pivot_row) if v]
    for i in range(len(t)):
        target = t[i]
        f = target[col]
        if i != row and f:
            for j, v in nonzero:
                target[j] -= f * v


def _drive_out(t: list[list[Fraction]], basis: list, first_art: int) -> None:
    """Pivot artificials left in the basis (at zero) onto original columns; a row with none is redundant."""
    for i, b in enumerate(basis):
        if b is not None and b >= first_art:
            col = next((j for j in range(first_art) if t[i][j] != 0), None)
            if col is None:
                basis[i] = None  # redundant row
            else:
                _pivot(t, i, col)
                basis[i] = col


def _verify(rows, x: list[Fraction]) -> None:
    for coeffs, op, rhs in rows:
        lhs = sum((Fraction(c) * v for c, v in zip(coeffs, x, strict=False)), Fraction(0))
        ok = {"<=": lhs <= rhs, ">=": lhs >= rhs, "==": lhs == rhs}[op]
        if not ok:
            raise AssertionError(f"exact LP: the optimum violates {coeffs} {op} {rhs} (lhs {lhs})")
