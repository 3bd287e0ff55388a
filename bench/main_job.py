"""The README's main job, `scalec compare sp mup completep completedp --empirical --out DIR`, timed against another
scalec install (e.g. a checkout of an earlier commit with its own venv), arms interleaved A B B A ... in one run so
machine load hits both alike; prints each run's wall and CPU seconds (the command and its worker processes) and
the paired wall ratio new / old, and checks that both reports give the same verdicts.

    python bench/main_job.py --old /tmp/main_baseline/V/bin/scalec --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = ["compare", "sp", "mup", "completep", "completedp", "--empirical"]


def run(scalec: str, out: Path, cache: Path) -> tuple[float, float]:
    """(wall s, CPU s of the command and its children) of one run of the job into `out`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {**os.environ, "SCALEC_CACHE": str(cache)}
    subprocess.run([scalec, *JOB, "--out", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def verdicts(report: Path) -> str:
    """The report's text without its timing lines (what must not change)."""
    text = report.read_text()
    return re.sub(r"(Run time:|wrote ).*", "", text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the other install's scalec executable")
    ap.add_argument("--new", default=shutil.which("scalec") or str(Path(sys.executable).with_name("scalec")))
    ap.add_argument("--rounds", type=int, default=2, help="pairs of runs (order alternates: ABBA...)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scalec-main-job-"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    times: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
    for r in range(args.rounds):
        for arm in ("new", "old") if r % 2 == 0 else ("old", "new"):
            exe = args.new if arm == "new" else args.old
            wall, cpu = run(exe, work / f"{arm}{r}", work / f"cache-{arm}")
            times[arm].append((wall, cpu))
            print(f"round {r} {arm}: {wall:.1f} s wall, {cpu:.1f} s CPU, load {os.getloadavg()[0]:.1f}", flush=True)
    ratios = [n[0] / o[0] for n, o in zip(times["new"], times["old"], strict=True)]
    same = all(
        verdicts(work / f"new{r}" / "report.md") == verdicts(work / f"old{r}" / "report.md") for r in range(args.rounds)
    )
    print(
        f"wall new/old per round: {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}; "
        f"CPU new/old {sum(c for _, c in times['new']) / sum(c for _, c in times['old']):.3f}; "
        f"reports (verdict text) identical: {same}; load average at end {os.getloadavg()[0]:.1f}"
    )
    print(f"reports kept in {work}")


if __name__ == "__main__":
    main()
