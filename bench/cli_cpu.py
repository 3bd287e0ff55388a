"""CPU seconds of the everyday commands, this install against another (e.g. a checkout of an earlier commit with
its own venv), run alternately in one session so machine load hits both alike; medians over rounds.

Commands: `check`, `show` and `compile` of a bundled rule (after a first run filled the rule cache), `plan --model
gpt`, and building the bundled GPT on the meta device in a fresh process (what every plan and coordinate check
does). CPU = user + system time of the process (os.wait4), which load inflates far less than wall time.

    python bench/cli_cpu.py --old /tmp/main_baseline/V/bin/scalec --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

META_BUILD = (
    "import torch\n"
    "from scalec.runtime.trainer.gpt import GPT, GPTConfig\n"
    "with torch.device('meta'):\n"
    "    GPT(GPTConfig(width=256, depth=4, head_dim=32, seq_len=64))\n"
)
IMPORT_TORCH = "import torch\n"


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    """User + system CPU seconds of one run of `argv` (its output discarded; it must succeed)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode()[-500:]}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the other install's scalec executable")
    ap.add_argument("--new", default=str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "scalec"))
    ap.add_argument("--rule", default="completedp")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    commands = {
        "check": ["check", args.rule],
        "show": ["show", args.rule],
        "compile": ["compile", args.rule],
        "plan --model gpt": ["plan", args.rule, "--model", "gpt", "--width", "256", "--depth", "4"],
    }
    cache = Path(tempfile.mkdtemp(prefix="scalec-bench-cache-"))
    env = {**os.environ, "SCALEC_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    installs = {"new": Path(args.new), "old": Path(args.old)}
    for exe in installs.values():  # fill the rule cache (the new install's; the old one has none)
        cpu_seconds([str(exe), "check", args.rule], env)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    cpu: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for arm in ("new", "old") if r % 2 == 0 else ("old", "new"):
            exe = installs[arm]
            python = str(exe.with_name("python"))
            runs = {name: [str(exe), *argv] for name, argv in commands.items()}
            runs["meta GPT build (fresh process)"] = [python, "-c", META_BUILD]
            runs["import torch alone"] = [python, "-c", IMPORT_TORCH]
            for name, argv in runs.items():
                cpu.setdefault((name, arm), []).append(cpu_seconds(argv, env))
    print(f"| command | new CPU s | old CPU s | new / old |  ({args.rounds} rounds, medians)")
    print("|---|---|---|---|")
    for name in dict.fromkeys(n for n, _ in cpu):
        new, old = statistics.median(cpu[(name, "new")]), statistics.median(cpu[(name, "old")])
        print(f"| {name} | {new:.2f} | {old:.2f} | {new / old:.2f} |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
