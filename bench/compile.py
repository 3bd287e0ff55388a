"""Time to check + compile every bundled rule file, after imports (targets: check < 1 s per file, all < 2 s), and
`scalec derive`'s time per file (target: under 1 s for the bundled transformer roles with all four axes).

.venv/bin/python bench/compile.py
"""

from __future__ import annotations

import time

import lark  # noqa: F401 - imports are excluded from the timing
import sympy  # noqa: F401

from scalec.compiler.analysis import desiderata
from scalec.compiler.codegen import generate
from scalec.compiler.loader import bundled_rules
from scalec.compiler.parameterisation import compile_ir, import_source


def main() -> None:
    import scalec.compiler.templates  # noqa: F401

    t_warm = time.perf_counter()
    compile_ir("sp")  # builds the lark parser and warms sympy's caches once per process
    print(f"warm-up (parser + sympy caches, compile sp once): {time.perf_counter() - t_warm:.3f} s")
    names = list(bundled_rules())
    rows = []
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        ir, _ = compile_ir(name)
        t1 = time.perf_counter()
        src = generate(ir)
        import_source(src, ir.name)
        t2 = time.perf_counter()
        desiderata(ir)
        t3 = time.perf_counter()
        rows.append((name, t1 - t0, t2 - t1, t3 - t2, len(src.splitlines())))
    total = time.perf_counter() - t_all
    print(f"{'rule':<20} {'check s':>8} {'codegen s':>10} {'analysis s':>11} {'lines':>6}  check < 1 s")
    for name, c, g, a, n in rows:
        print(f"{name:<20} {c:8.3f} {g:10.3f} {a:11.3f} {n:6d}  {'OK' if c < 1 else 'OVER'}")
    print(
        f"total for {len(names)} files (parse+resolve+check+codegen+import+desiderata): {total:.2f} s "
        f"(target < 2 s) -> {'OK' if total < 2 else 'OVER'}"
    )
    derive_times()


def derive_times() -> None:
    """derive's LPs alone and derive + render + the full check of its output, per axis set (CPU seconds)."""
    from scalec.compiler import derive as derive_module
    from scalec.compiler.derive import DeriveSpec, derive
    from scalec.compiler.derive_emit import derive_file

    print(f"{'derive --axes':<32} {'LPs s':>7} {'LPs+file+check s':>17}  LPs < 1 s")
    for axes in (("width",), ("width", "depth"), ("width", "depth", "batch", "duration")):
        spec = DeriveSpec(axes=axes, gauge="mup", eps="blocks")
        derive_module._depth_gamma.cache_clear()  # each row pays for its own LPs
        derive_module._sde_exponents.cache_clear()
        t0 = time.process_time()
        derive(spec)
        t1 = time.process_time()
        derive_file(spec)
        t2 = time.process_time()
        print(f"{','.join(axes):<32} {t1 - t0:7.3f} {t2 - t1:17.3f}  {'OK' if t1 - t0 < 1 else 'OVER'}")


if __name__ == "__main__":
    main()
