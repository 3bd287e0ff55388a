"""The CPU-scale transfer studies whose figures and tables live in results/ (run from the repo root).

    python bench/transfer_studies.py width        # (1) LR optimum across width: muP vs SP
    python bench/transfer_studies.py depth        # (2) LR optimum across depth: CompleteP vs muP
    python bench/transfer_studies.py batch        # (3a) across batch at fixed tokens: CompleteDP vs CompleteP
    python bench/transfer_studies.py duration     # (3b) across duration at fixed batch
    python bench/transfer_studies.py per-module   # (4) per-module multipliers: proxy -> target
    python bench/transfer_studies.py width-muon   # (5) LR optimum across width under Muon: muon vs Muon on SP
    python bench/transfer_studies.py all          # the five above (width256: the width study up to n=256)
    python bench/transfer_studies.py --dry-run depth  # print the study's scalec commands, run nothing

Each study prints the exact `scalec` commands it runs; runs are stored under results/<study>/store, so a rerun
reuses them and only redoes the tables and figures. One training process at a time, one torch thread
(OMP_NUM_THREADS=1), default corpus (Shakespeare, bytes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

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
    args = parser.parse_args(argv)
    studies = [args.studies] if isinstance(args.studies, str) else args.studies
    names = [n for name in studies for n in (ALL if name == "all" else [name])]
    for name in dict.fromkeys(names):
        STUDIES[name](args.dry_run)


if __name__ == "__main__":
    main()
