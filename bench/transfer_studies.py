"""The CPU-scale transfer studies whose figures and tables live in results/ (run from the repo root).

    python bench/transfer_studies.py width        # (1) LR optimum across width: muP vs SP
    python bench/transfer_studies.py depth        # (2) LR optimum across depth: CompleteP vs muP
    python bench/transfer_studies.py batch        # (3a) across batch at fixed tokens: CompleteDP vs CompleteP
    python bench/transfer_studies.py duration     # (3b) across duration at fixed batch
    python bench/transfer_studies.py per-module   # (4) per-module multipliers: proxy -> target
    python bench/transfer_studies.py width-muon   # (5) LR optimum across width under Muon: muon vs Muon on SP
    python bench/transfer_studies.py all          # the five above (width256: the width study up to n=256)
    python bench/transfer_studies.py --dry-run depth  # print the study's scalec commands, run nothing

The evidence experiments of issue 20 (the drift protocol of runtime/studies/drift_protocol.py, intervals and
verdicts; one `scalec sweep` per curve, runs in results/evidence/store, summaries in results/evidence/NAME.json):

    python bench/transfer_studies.py ev-duration ev-batch ev-depth ev-width ev-per-module  # (ev-depth-long: 400 steps)
    python bench/transfer_studies.py --sizes 256 ev-batch    # only the curves at these sizes (split across processes)
    python bench/transfer_studies.py --collect duration,batch  # NAME.json from the stores, no training
    python bench/transfer_studies.py --analyse               # every NAME.md table and NAME.png figure from NAME.json

Each study prints the exact `scalec` commands it runs; runs are stored under results/<study>/store, so a rerun
reuses them and only redoes the tables and figures. One training process at a time, one torch thread
(OMP_NUM_THREADS=1), default corpus (Shakespeare, bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalec.runtime.studies import drift_protocol as protocol

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
SCALEC = [sys.executable, "-c", "from scalec.cli import main; main()"]
# Small CPU runs: 64-token sequences, 2048 tokens/step, final-only evaluation on 16 x 16 sequences.
COMMON = ["--seq-len", "64", "--eval-every", "1000000", "--eval-batches", "16", "--device", "cpu"]
ETA_GRID = "eta=2^-11..2^-5:7"
# Seeds averaged per grid point: the depth, batch and duration curves are flat near their optima, so one seed's
# noise (about 0.02-0.05 in loss) can move the argmin by a grid step.
SEEDS = ["--seeds", "3"]


def run(args: list[str], dry: bool) -> None:
    """Print and run one scalec command (stop on failure); `dry` only prints it."""
    print("$ scalec " + " ".join(shlex.quote(a) for a in args), flush=True)
    if dry:
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run([*SCALEC, *args], check=True, env=env, cwd=ROOT)
    print(f"# {time.perf_counter() - t0:.0f}s", flush=True)


def transfer(
    dry: bool, rule: str, vs: str, base: str, target: str, out: str, title: str, length: tuple[str, ...] = ()
) -> None:
    """One `scalec transfer` study of eta over ETA_GRID, `rule` against `vs`, from the base to the target shape."""
    run(
        [
            "transfer", rule, "--vs", vs, "--hp", ETA_GRID, "--base-shape", base, "--target-shape", target,
            *length, *COMMON, *SEEDS, "--out", out, "--title", title,
        ],
        dry,
    )  # fmt: skip


STEPS_100 = ("--batch", "2048", "--steps", "100")  # width and depth studies: 100 steps x 2048 tokens


def width(dry: bool, target: str = "n=128") -> None:
    """(1) LR optimum across width 32..128 (256 with `width256`): muP vs SP."""
    transfer(dry, "mup", "sp", "n=32,L=2", target, "results/width", "width transfer: 100 steps x 2048 tokens, L=2",
             STEPS_100)  # fmt: skip


def width256(dry: bool) -> None:
    """(1') the width study up to n=256 (not part of `all`)."""
    width(dry, "n=256")


def depth(dry: bool) -> None:
    """(2) LR optimum across depth 2..16: CompleteP (residual m_L^-1) vs muP (no depth rule)."""
    transfer(dry, "completep", "mup", "n=64,L=2", "L=16", "results/depth",
             "depth transfer: 100 steps x 2048 tokens, n=64", STEPS_100)  # fmt: skip


MUON_SP = "results/width_muon/muon_sp.scale"


def width_muon(dry: bool) -> None:
    """(5) LR optimum across width 32..128 under Muon: `muon` vs Muon on SP.

    `muon` scales width spectrally (muP elsewhere); Muon on SP has no width rule anywhere; the width study's settings.
    """
    transfer(dry, "muon", MUON_SP, "n=32,L=2", "n=128", "results/width_muon",
             "width transfer under Muon: 100 steps x 2048 tokens, L=2", STEPS_100)  # fmt: skip


CPU_RULE = "results/batch_duration/completedp_cpu.scale"


def batch(dry: bool) -> None:
    """(3a) batch 2^10..2^12 at a fixed 2^18 tokens: CompleteDP's sqrt rule vs CompleteP (no batch rule)."""
    transfer(dry, CPU_RULE, "completep", "n=32,L=2,B=2^10,D=2^18", "B=2^12", "results/batch_duration/batch",
             "batch transfer at 2^18 tokens, n=32, L=2")  # fmt: skip


def duration(dry: bool) -> None:
    """(3b) duration 2^17..2^19 tokens at batch 2^11: CompleteDP's duration rule vs CompleteP."""
    transfer(dry, CPU_RULE, "completep", "n=32,L=2,B=2^11,D=2^17", "D=2^19", "results/batch_duration/duration",
             "duration transfer at batch 2^11, n=32, L=2")  # fmt: skip


PM = "results/per_module"
PM_SPACE = "eta,lr[embed],lr[unembed],lr[attn.*],lr[mlp.*],lr[norm],lr[final_norm]"


def per_module(dry: bool) -> None:
    """(4) Per-module LR multipliers + eta searched at a proxy (n=32), compared at the target (n=128).

    The proxy's per-module HPs vs the best global eta found by a sweep at the target itself.
    """
    shape = ["--depth", "2", "--batch", "2048", "--steps", "100", *COMMON]
    run(["sweep", "completep", "--width", "32", "--hp", ETA_GRID, *shape, "--out", f"{PM}/proxy_global"], dry)
    run(
        [
            "search",
            "completep",
            "--width",
            "32",
            "--space",
            PM_SPACE,
            "--sampler",
            "tpe",
            "--trials",
            "40",
            *shape,
            "--out",
            f"{PM}/proxy_search",
            "--study",
            "per-module-proxy",
        ],
        dry,
    )
    run(["sweep", "completep", "--width", "128", "--hp", ETA_GRID, *shape, "--out", f"{PM}/target_global"], dry)
    if dry:  # the last sweep's HPs are the search's best: known only once it has run
        print("# then: scalec sweep completep --width 128 --hp NAME=VALUE... (the search's best HPs) ...", flush=True)
        return
    from scalec.runtime.studies.search import collect
    from scalec.runtime.studies.search_settings import SearchSettings

    settings = SearchSettings.from_json((ROOT / PM / "proxy_search" / "search_settings.json").read_text())
    best = collect(settings)
    hp_args = [a for k, v in sorted(best.best_params.items()) for a in ("--hp", f"{k}={v:.6g}")]
    run(["sweep", "completep", "--width", "128", *hp_args, *shape, "--out", f"{PM}/target_transferred"], dry)
    write_per_module_table(best)


def _best(store: Path) -> tuple[float, dict[str, float]]:
    from scalec.runtime.studies.run_store import RunStore
    from scalec.runtime.studies.sweep import best_row, summarize

    row = best_row(summarize(list(RunStore(store).records())))
    return (row.loss, row.hp) if row else (math.inf, {})


def write_per_module_table(best) -> None:
    """results/per_module/per_module.md: proxy and target losses of global vs per-module HPs."""
    from scalec.runtime.studies.run_store import RunStore
    from scalec.runtime.studies.sweep import fmt_value, summarize

    proxy_global_loss, proxy_global_hp = _best(ROOT / PM / "proxy_global")
    target_rows = summarize(list(RunStore(ROOT / PM / "target_global").records()))
    target_best_loss, target_best_hp = _best(ROOT / PM / "target_global")
    at_proxy_eta = [r for r in target_rows if math.isclose(r.hp["eta"], proxy_global_hp["eta"])]
    transferred_loss, _ = _best(ROOT / PM / "target_transferred")
    lines = [
        "| HPs | chosen at | n=32 (proxy) loss | n=128 (target) loss |",
        "|---|---|---|---|",
        (
            f"| global eta={fmt_value(proxy_global_hp['eta'])} | proxy sweep (7 points) | "
            f"{proxy_global_loss:.4f} | "
            f"{at_proxy_eta[0].loss:.4f} |"
        ),
        (f"| global eta={fmt_value(target_best_hp['eta'])} | target sweep (7 points) | - | {target_best_loss:.4f} |"),
        (
            f"| per-module ({len(best.best_params)} HPs) | proxy search (TPE, {len(best.trials)} trials) | "
            f"{best.best_value:.4f} | {transferred_loss:.4f} |"
        ),
        "",
        "Per-module HPs found at the proxy: "
        + ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(best.best_params.items())),
    ]
    (ROOT / PM / "per_module.md").write_text("\n".join(lines) + "\n")
    (ROOT / PM / "per_module.json").write_text(
        json.dumps(
            {
                "proxy_global": {
                    "eta": proxy_global_hp["eta"],
                    "proxy_loss": proxy_global_loss,
                    "target_loss": at_proxy_eta[0].loss,
                },
                "target_global": {"eta": target_best_hp["eta"], "target_loss": target_best_loss},
                "per_module": {
                    "hp": best.best_params,
                    "proxy_loss": best.best_value,
                    "target_loss": transferred_loss,
                    "trials": len(best.trials),
                },
            },
            indent=2,
        )
        + "\n"
    )
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------------------------
# The evidence experiments (issue 20): every curve is one `scalec sweep` process on the drift protocol's grid
# (runtime/studies/drift_protocol.py); the runs land in results/evidence/store/<curve> (not committed) and are
# summarised, run by run, in results/evidence/<NAME>.json, which `--analyse` turns into tables and figures.
# ---------------------------------------------------------------------------------------------------------------

EVIDENCE = "results/evidence"
EV_STORE = f"{EVIDENCE}/store"
EV_RULES = f"{EVIDENCE}/rules"
CDP = f"{EV_RULES}/completedp_b10_d19.scale"  # Complete(d)P with its base at B = 2^10, D = 2^19
BETAS = f"{EV_RULES}/completep_betas_b10_d19.scale"  # CompleteP + Complete(d)P's beta rules only
EV_EVAL = ["--seq-len", "64", "--eval-every", "1000000", "--eval-batches", str(protocol.EVAL_BATCHES), "--device",
           "cpu"]  # fmt: skip
REVERSE = False  # --reverse: run the curves last first (two processes sharing one experiment meet in the middle)
SIZE_FILTER: set[int] | None = None  # --sizes: the evidence curves this process runs (split across processes)
AXIS_FLAG = {"n": "--width", "L": "--depth", "B": "--batch", "D": "--duration"}


@dataclass(frozen=True)
class EvCurve:
    """One rule at one size: a sweep of eta on the protocol's grid around `centre` (log2 of the predicted optimum).

    `shape` holds every flag of the run shape (--width, --depth, --batch, --duration or --steps); `fixed` holds
    fixed HP overrides (NAME=VALUE) and `grid=False` runs only the point `centre` (with `fixed`), for E4's arms.
    """

    label: str
    rule: str
    axis: str
    shape: tuple[tuple[str, int], ...]
    centre: float
    seeds: int = protocol.SEEDS
    fixed: tuple[str, ...] = ()
    grid: bool = True

    @property
    def value(self) -> int:
        """The size on the scaled axis."""
        return dict(self.shape)[AXIS_FLAG[self.axis]]

    @property
    def out(self) -> str:
        """The curve's sweep directory: every setting in its name, so studies sharing a curve share its runs."""
        stem = Path(self.rule).stem
        parts = [f"{flag.strip('-')}{v}" for flag, v in self.shape]
        if self.fixed:  # the fixed HPs by a short hash of their text
            parts.append("hp" + hashlib.sha256(" ".join(self.fixed).encode()).hexdigest()[:8])
        if not self.grid:
            parts.append(f"eta{self.centre:g}")
        return f"{EV_STORE}/{stem}_{'_'.join(parts)}_s{self.seeds}"

    def args(self, log2_grid: list[float]) -> list[str]:
        """The `scalec sweep` arguments for the grid (log2 eta values)."""
        shape = [a for flag, v in self.shape for a in (flag, str(v))]
        etas = ",".join(f"2^{x:g}" for x in log2_grid)
        hps = [a for f in self.fixed for a in ("--hp", f)]
        return ["sweep", self.rule, *shape, "--hp", f"eta={etas}", *hps, "--seeds", str(self.seeds), *EV_EVAL,
                "--out", self.out]  # fmt: skip


def curve_runs(curve: EvCurve) -> list[dict[str, Any]]:
    """The finished and diverged runs of a curve's sweep directory as evidence rows."""
    from scalec.runtime.studies.run_store import RunStore

    rows = []
    for r in RunStore(ROOT / curve.out).records():
        if r.status not in ("finished", "diverged"):
            continue
        loss = r.loss
        rows.append({
            "rule": curve.label, "axis": curve.axis, "value": curve.value, "eta": float(r.config["hp"]["eta"]),
            "seed": int(r.config["seed"]), "val_loss": loss if math.isfinite(loss) else None,
            **({"hp": {k: v for k, v in r.config["hp"].items() if k != "eta"}} if curve.fixed else {}),
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["eta"], r["seed"]))


def curve_horizon(curve: EvCurve) -> dict[str, Any] | None:
    """The curve's parameter count and training tokens, from any finished run's summary."""
    from scalec.runtime.studies.run_store import RunStore

    for r in RunStore(ROOT / curve.out).records():
        if r.status == "finished":
            s = r.summary
            return {"rule": curve.label, "axis": curve.axis, "value": curve.value, "params": s["params"],
                    "tokens": s["tokens"]}  # fmt: skip
    return None


def run_curve(curve: EvCurve, dry: bool) -> None:
    """Sweep the curve's 5-point grid, then extend it one point at a time while the seed-mean best is at an edge."""
    grid = protocol.centred_grid(curve.centre) if curve.grid else [curve.centre]
    for _ in range(protocol.MAX_EXTENSIONS + 1):
        run(curve.args(grid), dry)
        if dry or not curve.grid:
            return
        means: dict[float, list[float]] = {}
        for r in curve_runs(curve):
            loss = math.inf if r["val_loss"] is None else r["val_loss"]
            means.setdefault(round(math.log2(r["eta"]), 9), []).append(loss)
        xs = sorted(x for x in means if any(math.isclose(x, g) for g in grid))
        if sum(len(means[x]) for x in xs) < len(grid) * curve.seeds:  # runs held by another process: it decides
            return
        wider = protocol.extend_grid(xs, [sum(means[x]) / len(means[x]) for x in xs])
        if len(wider) == len(xs):
            return
        grid = wider


def _shape(**kw: int) -> tuple[tuple[str, int], ...]:
    return tuple((f"--{k}", v) for k, v in kw.items())


EV_ARMS = (("CompleteP", "completep"), ("Complete(d)P", CDP), ("beta-only", BETAS))


def _ev_duration() -> list[EvCurve]:
    return [EvCurve(label, rule, "D", _shape(width=32, depth=2, batch=2**10, duration=2**d), -9.0)
            for d in (19, 17, 21) for label, rule in EV_ARMS]  # fmt: skip


def _ev_batch() -> list[EvCurve]:
    return [EvCurve(label, rule, "B", _shape(width=32, depth=2, batch=2**b, duration=2**19), -9.0)
            for b in (10, 8, 12) for label, rule in EV_ARMS]  # fmt: skip


def _ev_depth() -> list[EvCurve]:
    arms = (("CompleteP (alpha=1)", "completep"), ("depth-muP (alpha=1/2)", "depth_mup"), ("muP", "mup"))
    curves = [EvCurve(label, rule, "L", _shape(width=32, depth=d, batch=2048, steps=100), -9.0)
              for d in (2, 16) for label, rule in arms]  # fmt: skip
    # 4x the tokens (400 steps) for muP and CompleteP: does "depth hurts muP" survive longer training?
    # muP first: its two depths settle the claim, CompleteP's give the contrast.
    curves += [EvCurve(f"{label}, 400 steps", rule, "L", _shape(width=32, depth=d, batch=2048, steps=400), -9.0)
               for label, rule in arms[::-1] if rule != "depth_mup" for d in (2, 16)]  # fmt: skip
    return curves


def _ev_width() -> list[EvCurve]:
    # Centres: the old 3-seed grid optima (muP 2^-9 at every width; SP 2^-7 at n=32, one octave lower per doubling).
    centres = {("mup", 32): -9.0, ("mup", 256): -9.0, ("sp", 32): -7.0, ("sp", 256): -10.0}
    return [EvCurve(label, rule, "n", _shape(width=n, depth=2, batch=2048, steps=100), centres[rule, n], seeds=2)
            for n in (32, 256) for label, rule in (("muP", "mup"), ("SP", "sp"))]  # fmt: skip


# E4's arms at the target (n = 128): HPs from results/per_module/per_module.json and its target sweep.
PM_BEST = {
    "eta": 0.003431027577762971, "lr[embed]": 0.32034136011639974, "lr[attn.q]": 1.2774053429653733,
    "lr[attn.k]": 1.4485513455196495, "lr[attn.v]": 0.20021206404376984, "lr[attn.o]": 1.037192578120986,
    "lr[mlp.up]": 2.2469053983343303, "lr[mlp.gate]": 0.48758692680685, "lr[mlp.down]": 1.9854243924619466,
    "lr[norm]": 0.9279374593999603, "lr[final_norm]": 1.3074833349666446, "lr[unembed]": 3.77307723221382,
}  # fmt: skip


def _ev_per_module() -> list[EvCurve]:
    shape = _shape(width=128, depth=2, batch=2048, steps=100)
    pm_eta = math.log2(PM_BEST["eta"])
    per_module = tuple(f"{k}={v:.6g}" for k, v in PM_BEST.items() if k != "eta")
    embeds = tuple(f"{k}={PM_BEST[k]:.6g}" for k in ("lr[embed]", "lr[unembed]"))
    arms = (("global eta 2^-8 (old target-sweep best)", -8.0, ()), ("global eta 2^-9 (next grid point)", -9.0, ()),
            ("per-module (12 HPs)", pm_eta, per_module), ("embed/unembed only", pm_eta, embeds))  # fmt: skip
    return [EvCurve(label, "completep", "n", shape, c, seeds=5, fixed=f, grid=False) for label, c, f in arms]


# name -> (curves, base size, the study's figure/table title); the order is the order of value (issue 20)
EVIDENCE_STUDIES: dict[str, tuple[Callable[[], list[EvCurve]], int | None, str]] = {
    "duration": (_ev_duration, 2**19, "E1 duration: n=32, L=2, B=2^10"),
    "batch": (_ev_batch, 2**10, "E2 batch: n=32, L=2, D=2^19"),
    "depth": (_ev_depth, 2, "E3 depth: n=32, 2048-token batches"),
    "width": (_ev_width, 32, "E5 width: L=2, 100 steps x 2048 tokens"),
    "per_module": (_ev_per_module, None, "E4 per-module at n=128, L=2, 100 steps x 2048 tokens"),
}


def evidence(name: str, dry: bool, keep: Callable[[EvCurve], bool] = lambda c: True) -> None:
    """Run one evidence experiment's curves that `keep` selects (reusing finished runs), then write
    results/evidence/NAME.json from every curve of the experiment that has runs."""
    make, _, _ = EVIDENCE_STUDIES[name]
    for curve in make()[::-1] if REVERSE else make():
        if keep(curve) and (SIZE_FILTER is None or curve.value in SIZE_FILTER):
            run_curve(curve, dry)
    if not dry:
        write_evidence(name)


def write_evidence(name: str) -> Path:
    """results/evidence/NAME.json from the curves' run stores, with the drifts the protocol derives."""
    make, base, title = EVIDENCE_STUDIES[name]
    curves = make()
    runs = [r for curve in curves for r in curve_runs(curve)]
    horizon = [h for h in map(curve_horizon, curves) if h is not None]
    data: dict[str, Any] = {"experiment": name, "title": title, "base": base, "horizon": horizon, "runs": runs}
    if base is not None:
        data["drifts"] = analyse_drifts(runs, base)
    path = ROOT / EVIDENCE / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


rule_curves = protocol.rule_curves
analyse_drifts = protocol.drifts_from_runs


STUDIES = {
    "width": width,
    "width256": width256,
    "depth": depth,
    "batch": batch,
    "duration": duration,
    "per-module": per_module,
    "width-muon": width_muon,
}
ALL = [n for n in STUDIES if n != "width256"]


def _evidence_study(name: str) -> Callable[[bool], None]:
    def study(dry: bool) -> None:
        evidence(name, dry)

    study.__doc__ = f"evidence (issue 20): {EVIDENCE_STUDIES[name][2]} -> {EVIDENCE}/{name}.json"
    return study


for _name in EVIDENCE_STUDIES:
    STUDIES[f"ev-{_name.replace('_', '-')}"] = _evidence_study(_name)


def _long(curve: EvCurve) -> bool:
    return curve.label.endswith("400 steps")


def ev_depth(dry: bool) -> None:
    """evidence (issue 20): E3 depth at 100 steps (the three rules) -> results/evidence/depth.json"""
    evidence("depth", dry, lambda c: not _long(c))


def ev_depth_long(dry: bool) -> None:
    """evidence (issue 20): E3 depth at 400 steps (muP, CompleteP) -> results/evidence/depth.json"""
    evidence("depth", dry, _long)


STUDIES["ev-depth"] = ev_depth
STUDIES["ev-depth-long"] = ev_depth_long


# --- --analyse: every table and figure of results/evidence re-derived from the stored runs, without training ---

AXIS_NAME = {"n": "width", "L": "depth", "B": "batch (tokens/step)", "D": "duration (tokens)"}


def _pow2(v: float) -> str:
    if v < 1024 and float(v).is_integer():
        return f"{int(v)}"
    e = math.log2(v)
    return f"2^{e:g}" if float(e).is_integer() else f"{v:g}"


def _ci(ci: list[float] | tuple[float, float]) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _own_optimum_losses(curves: dict[str, dict[int, protocol.SeedCurves]], size: int) -> dict[str, list[float]]:
    """Per rule, each seed's fitted loss at the rule's own fitted optimum at `size` (paired by seed)."""
    return {rule: protocol.fitted_loss(c[size], protocol.optimum(c[size])) for rule, c in curves.items() if size in c}


def _gap_line(a: str, b: str, la: list[float], lb: list[float], where: str) -> str:
    mean, (lo, hi) = protocol.paired_t([x - y for x, y in zip(la, lb, strict=True)])
    return f"| {a} minus {b} | {where} | {mean:+.3f} | [{lo:+.3f}, {hi:+.3f}] |"


def drift_markdown(data: dict[str, Any]) -> str:
    """The drift study's tables: optima per size, drifts with intervals and verdicts, exponents, paired gaps."""
    runs, base = data["runs"], data["base"]
    curves = rule_curves(runs)
    axis = runs[0]["axis"]
    tokens = _horizon(data)
    left_out = sorted({(r["rule"], r["value"]) for r in runs} - {(k, v) for k, c in curves.items() for v in c})
    if left_out:
        tokens += " Left out (fewer than 3 points that every seed finished): " + ", ".join(
            f"{rule} {axis}={_pow2(v)}" for rule, v in left_out
        )
    out = [f"## {data['title']}", "", tokens, "",
           f"### Fitted optimum log2(eta) per {AXIS_NAME[axis]} (seed mean; each seed's own optimum in brackets)",
           "", "| rule | " + " | ".join(_pow2(v) for v in sorted({r['value'] for r in runs})) + " |",
           "|---|" + "---|" * len({r["value"] for r in runs})]  # fmt: skip
    sizes = sorted({r["value"] for r in runs})
    for rule, by_size in curves.items():
        cells = []
        for v in sizes:
            c = by_size.get(v)
            if c is None:
                cells.append("-")
                continue
            own = ", ".join(f"{o:.2f}" for o in protocol.seed_optima(c))
            edge = " (edge)" if protocol.optimum(c) in (min(c.x), max(c.x)) else ""
            cells.append(f"{protocol.optimum(c):.2f}{edge} ({own}); grid {min(c.x):g}..{max(c.x):g}")
        out.append(f"| {rule} | " + " | ".join(cells) + " |")
    out += ["", f"### Drift of the optimum from {axis}={_pow2(base)} (octaves; 90 % intervals: seed bootstrap, "
            "parametric, hull)", "", "| rule | to | drift | seed bootstrap | parametric | hull | verdict |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for d in analyse_drifts(runs, base):
        out.append(f"| {d['rule']} | {axis}={_pow2(d['to'])} | {d['octaves']:+.2f} | {_ci(d['ci90_seed'])} | "
                   f"{_ci(d['ci90_param'])} | {_ci(d['ci90'])} | {d['verdict']} |")  # fmt: skip
    out += ["", f"### Exponent of lr* ~ {axis}^k over the sizes (slope of log2 optimum on log2 {axis})", "",
            "| rule | sizes | k | hull 90 % |", "|---|---|---|---|"]  # fmt: skip
    for rule, by_size in curves.items():
        vs = sorted(by_size)
        if len(vs) < 2:
            continue
        sd = protocol.pooled_residual_sd(list(by_size.values()))
        for part in _exponent_ranges(vs, base):
            est = protocol.exponent([by_size[v] for v in part], [math.log2(v) for v in part], sd)
            out.append(f"| {rule} | {', '.join(_pow2(v) for v in part)} | {est.value:+.2f} | {_ci(est.ci90)} |")
    out += [
        "",
        "### Loss at each rule's own fitted optimum (mean of the seeds' quadratic fits there)",
        "",
        "| rule | " + " | ".join(f"{axis}={_pow2(v)}" for v in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for rule, by_size in curves.items():
        cells = []
        for v in sizes:
            c = by_size.get(v)
            cells.append("-" if c is None else f"{statistics.fmean(protocol.fitted_loss(c, protocol.optimum(c))):.4f}")
        out.append(f"| {rule} | " + " | ".join(cells) + " |")
    out += ["", "### Paired loss gaps at each rule's own fitted optimum (mean over seeds, 90 % t interval)", "",
            "| gap | where | mean | 90 % |", "|---|---|---|---|"]  # fmt: skip
    rules = list(curves)
    tokens_of = {(h["rule"], h["value"]): h["tokens"] for h in data.get("horizon", [])}
    for v in sizes:
        own = _own_optimum_losses(curves, v)
        for i, a in enumerate(rules):
            for b in rules[i + 1 :]:
                # Arms trained for different numbers of tokens (E3's 400-step repeat) are not compared.
                if tokens_of.get((a, v)) != tokens_of.get((b, v)):
                    continue
                if a in own and b in own and _same_seeds(curves[a][v], curves[b][v]):
                    out.append(_gap_line(a, b, own[a], own[b], f"{axis}={_pow2(v)}"))
    for rule, by_size in curves.items():  # the size effect within a rule (depth: does depth help or hurt?)
        if base in by_size:
            for v in sizes:
                if v != base and v in by_size and _same_seeds(by_size[v], by_size[base]):
                    own_v = protocol.fitted_loss(by_size[v], protocol.optimum(by_size[v]))
                    own_b = protocol.fitted_loss(by_size[base], protocol.optimum(by_size[base]))
                    out.append(_gap_line(f"{rule} at {axis}={_pow2(v)}", f"at {axis}={_pow2(base)}", own_v, own_b,
                                         "within the rule"))  # fmt: skip
    return "\n".join(out) + "\n"


def _same_seeds(a: protocol.SeedCurves, b: protocol.SeedCurves) -> bool:
    return a.seeds == b.seeds


def _exponent_ranges(sizes: list[int], base: int) -> list[list[int]]:
    """The whole range, and each half on either side of the base when there are three or more sizes."""
    parts = [sizes]
    if len(sizes) >= 3 and base in sizes:
        i = sizes.index(base)
        parts += [p for p in (sizes[: i + 1], sizes[i:]) if len(p) >= 2]
    return parts


def _horizon(data: dict[str, Any]) -> str:
    runs = data["runs"]
    seeds = sorted({r["seed"] for r in runs})
    sizes = "; ".join(f"{h['rule']} {h['axis']}={_pow2(h['value'])}: {h['params']:,} parameters, {h['tokens']:,} tokens"
                      for h in data.get("horizon", []))  # fmt: skip
    return f"{len(runs)} runs, seeds {seeds}." + (f" Horizon: {sizes}." if sizes else "")


def per_module_markdown(data: dict[str, Any]) -> str:
    """E4: each arm's loss over its seeds and its paired gain (90 % t interval) over each global-eta arm (the arms
    named "global ..."; the first arm when none is)."""
    arms: dict[str, dict[int, float]] = {}
    for r in data["runs"]:
        arms.setdefault(r["rule"], {})[r["seed"]] = math.inf if r["val_loss"] is None else r["val_loss"]
    refs = [a for a in arms if a.startswith("global")] or [next(iter(arms))]
    out = [f"## {data['title']}", "", _horizon(data), "",
           "| arm | eta | mean loss | sd | " + " | ".join(f"gain over '{r}' (paired, 90 % t)" for r in refs) + " |",
           "|---|---|---|---|" + "---|" * len(refs)]  # fmt: skip
    etas = {r["rule"]: r["eta"] for r in data["runs"]}
    for arm, by_seed in arms.items():
        ys = [by_seed[s] for s in sorted(by_seed)]
        sd = statistics.stdev(ys) if len(ys) > 1 else math.nan
        cells = []
        for ref in refs:
            seeds = sorted(set(by_seed) & set(arms[ref]))
            gain, (lo, hi) = protocol.paired_t([arms[ref][s] - by_seed[s] for s in seeds])
            cells.append("-" if arm == ref else f"{gain:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        out.append(f"| {arm} | 2^{math.log2(etas[arm]):.2f} | {statistics.fmean(ys):.4f} | {sd:.4f} | "
                   + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(out) + "\n"


def drift_figure(data: dict[str, Any], path: Path) -> None:
    """One panel per rule: seed-mean loss vs log2 eta per size, a band from the lowest to the highest seed, the
    fitted optimum as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = rule_curves(data["runs"])
    axis = data["runs"][0]["axis"]
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), sharey=True, squeeze=False)
    sizes = sorted({r["value"] for r in data["runs"]})
    cmap = plt.get_cmap("viridis")
    for ax, (rule, by_size) in zip(axes[0], curves.items(), strict=True):
        for v, c in by_size.items():
            color = cmap(sizes.index(v) / max(1, len(sizes) - 1))
            ys = [list(col) for col in zip(*c.losses, strict=True)]
            ax.fill_between(c.x, [min(y) for y in ys], [max(y) for y in ys], color=color, alpha=0.2, lw=0)
            ax.plot(c.x, c.mean, "o-", ms=3, color=color, label=f"{axis}={_pow2(v)}")
            ax.axvline(protocol.optimum(c), color=color, lw=0.8, ls=":")
        ax.set_title(rule, fontsize=9)
        ax.set_xlabel("log2 eta")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"final val loss (band: {len(next(iter(next(iter(curves.values())).values())).seeds)} seeds)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(data["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def analyse_evidence(folder: Path | None = None) -> list[Path]:
    """Re-derive NAME.md (and NAME.png for the drift studies) from every results/evidence/NAME.json."""
    folder = folder or ROOT / EVIDENCE
    written = []
    for name in EVIDENCE_STUDIES:
        src = folder / f"{name}.json"
        if not src.exists():
            continue
        data = json.loads(src.read_text())
        if data.get("base") is None:
            (folder / f"{name}.md").write_text(per_module_markdown(data))
        else:
            (folder / f"{name}.md").write_text(drift_markdown(data))
            drift_figure(data, folder / f"{name}.png")
            written.append(folder / f"{name}.png")
        written.append(folder / f"{name}.md")
        print(f"# {src.relative_to(folder.parent.parent) if folder.is_relative_to(ROOT) else src} -> {name}.md",
              flush=True)  # fmt: skip
    return written


def main(argv: list[str] | None = None) -> None:
    listing = "\n".join(f"  {n:<11} {(f.__doc__ or '').splitlines()[0]}" for n, f in STUDIES.items())
    parser = argparse.ArgumentParser(
        prog="bench/transfer_studies.py",
        description=(__doc__ or "").splitlines()[0],
        epilog=f"studies:\n{listing}\n  {'all':<11} {', '.join(ALL)} (the default)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "studies", nargs="*", default="all", choices=[*STUDIES, "all"], metavar="STUDY", help="studies to run"
    )  # default a string: argparse checks a '*' positional's default against the choices
    parser.add_argument("--dry-run", action="store_true", help="print the exact scalec commands; run nothing")
    parser.add_argument("--reverse", action="store_true", help="evidence experiments: run the curves last first")
    parser.add_argument(
        "--collect",
        help=f"write {EVIDENCE}/NAME.json for these experiments (e.g. duration,batch) from their stores; no training",
    )
    parser.add_argument(
        "--sizes", help="evidence experiments: run only the curves at these sizes (e.g. 256,4096; the JSON keeps all)"
    )
    parser.add_argument(
        "--analyse", action="store_true", help=f"re-derive the tables and figures from {EVIDENCE}/*.json; train nothing"
    )
    args = parser.parse_args(argv)
    if args.analyse:
        analyse_evidence()
        return
    if args.collect:
        for name in args.collect.split(","):
            print(f"# {write_evidence(name).relative_to(ROOT)}", flush=True)
        return
    if args.reverse:
        global REVERSE
        REVERSE = True
    if args.sizes:
        global SIZE_FILTER
        SIZE_FILTER = {int(float(v)) for v in args.sizes.split(",")}
    studies = [args.studies] if isinstance(args.studies, str) else args.studies
    names = [n for name in studies for n in (ALL if name == "all" else [name])]
    for name in dict.fromkeys(names):
        STUDIES[name](args.dry_run)


if __name__ == "__main__":
    main()
