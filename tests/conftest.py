"""Shared fixtures."""

from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

# The tests train tiny models: one intra-op thread is the fastest for them, and it keeps a test run from thrashing
# on a shared 2-core machine (measured: 31.7 s -> 18.7 s for three model-heavy files at load 3). Set before any
# test module imports torch; subprocesses the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

BUNDLED = ["sp", "mup", "mup_table3", "depth_mup", "completep", "completedp", "completedp_halflife"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees a session-private SCALEC_CACHE (tests may point it elsewhere): never the user's cache."""
    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path_factory.getbasetemp() / "scalec-cache"))


@pytest.fixture
def write_rule(tmp_path: Path):
    """Write a dedented rule file into tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.scale"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return _write


# Tensor methods that read a value back to the host (a device sync on GPU).
HOST_READS = ("item", "tolist", "cpu", "__float__", "__int__", "__bool__", "__index__", "__format__", "__repr__")


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count host reads of tensors, by method; torch.optim's reads of its own host-side step counters (CPU
    tensors in a GPU run too, never a device sync) are left out."""
    import torch  # after OMP_NUM_THREADS above

    torch_optim = str(Path(torch.optim.__file__).parent)
    counts: Counter[str] = Counter()

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            if not sys._getframe(1).f_code.co_filename.startswith(torch_optim):
                counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    return counts


def install_run_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str, log: str) -> Path:
    """Write `source` as `tmp_path/<module>.py`, importable here and in the worker processes a study spawns, and
    point SCALEC_TEST_LOG (where the synthetic runs log `start PID KEY` / `end PID KEY`) at `tmp_path/<log>`."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SCALEC_TEST_LOG", str(tmp_path / log))
    return tmp_path / log
