"""A resumable store of training runs: one directory per run, keyed by a stable hash of its config.

`<root>/runs/<key>/run.json` holds the config, `result.json` (written atomically, last) the outcome;
the trainer writes into `<key>/train/`. A run with a result of status "finished" or "diverged" is never
repeated; a run dir without a result (a killed sweep) is run again, resuming from the trainer's checkpoint
when it has one. A `lock` file naming host:pid:start keeps two sweeps sharing a store from running one config twice.

The key covers what a run reads as well as its settings: a run function with a `key_inputs` attribute (a
factory of `config -> config with input hashes`, as the trainer's `run_inputs.InputHasher`) has each config
stamped with the hashes of its rule chain, corpus and model file before it is keyed, once per store object. An
edited input therefore gives new keys: those runs are trained afresh and the old results stay apart, untouched.
A store that cannot be written, or a disk that fills, stops the study with one line; a stored file that does not
read back is one line naming it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalec.errors import InputsChangedError, ScalecError
from scalec.runtime.atomic_io import WriteError, read_json, write_error, write_json_atomic
from scalec.runtime.studies.liveness import holder_alive, holder_id

DONE_STATES = ("finished", "diverged")
STATES = (*DONE_STATES, "failed")
RunFn = Callable[[Mapping[str, Any], Path], Mapping[str, Any]]


def load_run_fn(path: str) -> RunFn:
    """Import a `module:function` run function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


FIX = "move the run's folder away to train it again"


class StoreError(ScalecError):
    """A run store that cannot be written, or a stored run that cannot be read back."""


def canonical_json(config: Mapping[str, Any]) -> str:
    """Key-sorted compact JSON; equal configs give equal text (ints and equal floats normalised)."""
    return json.dumps(_normalise(config), sort_keys=True, separators=(",", ":"))


def _normalise(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _normalise(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_normalise(v) for v in x]
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    if isinstance(x, float):
        return float(f"{x:.12g}")
    return x


def config_key(config: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit key of a run config."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


@dataclass
class RunRecord:
    """The outcome of one run: status "finished" | "diverged" | "failed" | "running" (locked elsewhere)."""

    key: str
    config: dict[str, Any]
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reused: bool = False  # True when the result came from an earlier sweep

    @property
    def done(self) -> bool:
        """Finished or diverged: never run again."""
        return self.status in DONE_STATES

    @property
    def loss(self) -> float:
        """Final validation loss; inf for diverged runs, nan when unknown."""
        if self.status == "diverged":
            return math.inf
        value = self.summary.get("final_val_loss")
        return float(value) if value is not None else math.nan


def _write_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    write_json_atomic(path, _jsonable(payload), sort_keys=True)


def _run_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        return "a JSON object with the run's config expected"
    return None


def _result_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("status") not in STATES:
        return f"a JSON object with a status of {', '.join(STATES)} expected"
    if not isinstance(data.get("summary") or {}, dict) or not isinstance(data.get("error"), (str, type(None))):
        return "summary must be an object and error a text"
    loss = (data.get("summary") or {}).get("final_val_loss")
    if data["status"] == "finished" and not (
        isinstance(loss, (int, float)) and not isinstance(loss, bool) and math.isfinite(loss)
    ):
        return "it says finished, but its final_val_loss is not a finite number"
    return None


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _older_than(path: Path, seconds: float) -> bool:
    """An empty lock (its writer killed between create and write) is abandoned once it is this old."""
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return True


class RunStore:
    """Directory-backed run store; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self._stampers: dict[int, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}

    def keyed(self, config: Mapping[str, Any], run_fn: RunFn | None = None) -> dict[str, Any]:
        """The config as keyed and stored: canonical, and stamped with the input hashes `run_fn` declares
        (its `key_inputs`; see the module docstring). Hashes already in the config are kept."""
        factory = getattr(run_fn, "key_inputs", None)
        if factory is not None:
            stamp = self._stampers.setdefault(id(run_fn), factory())
            config = stamp(config)
        return json.loads(canonical_json(config))

    def run_dir(self, config: Mapping[str, Any]) -> Path:
        """The directory of a (keyed) config's run (not created)."""
        return self.runs / config_key(config)

    def get(self, config: Mapping[str, Any], run_fn: RunFn | None = None) -> RunRecord | None:
        """The stored record of a config, if any (finished, diverged or failed)."""
        return self._load(self.run_dir(self.keyed(config, run_fn)))

    def _load(self, run_dir: Path) -> RunRecord | None:
        if not (run_dir / "result.json").exists():
            return None
        run = read_json(run_dir / "run.json", FIX, _run_problem, "stored run")
        result = read_json(run_dir / "result.json", FIX, _result_problem, "run result")
        return RunRecord(
            run_dir.name,
            run["config"],
            result["status"],
            result.get("summary") or {},
            result.get("error"),
            reused=True,
        )

    def records(self) -> Iterator[RunRecord]:
        """Every run in the store that has a result."""
        if not self.runs.is_dir():
            return
        for run_dir in sorted(self.runs.iterdir()):
            record = self._load(run_dir)
            if record is not None:
                yield record

    def run(self, config: Mapping[str, Any], run_fn: RunFn) -> RunRecord:
        """Run `config` with `run_fn(config, train_dir) -> summary` unless already done; record the result.

        The summary's `status` ("finished" | "diverged") is kept; an exception other than KeyboardInterrupt is
        recorded as status "failed" (retried by the next sweep).
        """
        config = self.keyed(config, run_fn)
        run_dir = self.run_dir(config)
        existing = self._load(run_dir)
        if existing is not None and existing.done:
            return existing
        self._make(run_dir)
        if not self._claim(run_dir):
            return RunRecord(run_dir.name, config, "running", reused=True)
        try:
            _write_atomic(
                run_dir / "run.json",
                {"key": run_dir.name, "config": config, "started": time.time(), "host": socket.gethostname()},
            )
            try:
                summary = dict(run_fn(config, run_dir / "train"))
                status = str(summary.get("status", "finished"))
                if status not in DONE_STATES:
                    status = "finished"
                loss = summary.get("final_val_loss")
                if status == "finished" and (loss is None or not math.isfinite(float(loss))):
                    status = "diverged"
                record = RunRecord(run_dir.name, config, status, summary)
            except (WriteError, StoreError, InputsChangedError):
                raise  # the disk or the inputs, not the run: stop the study in one line; it is retried next time
            except Exception as exc:  # noqa: BLE001 - a crashed run is recorded and retried; the sweep goes on
                record = RunRecord(
                    run_dir.name,
                    config,
                    "failed",
                    {},
                    f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}",
                )
            _write_atomic(
                run_dir / "result.json",
                {"status": record.status, "summary": record.summary, "error": record.error},
            )
            return record
        finally:
            (run_dir / "lock").unlink(missing_ok=True)

    def _make(self, run_dir: Path) -> None:
        """Create a run's folder, or stop the study in one line naming the store."""
        for p in (self.root, *self.root.parents):
            if p.exists() and not p.is_dir():
                where = "is a file" if p == self.root else f"lies under {p}, which is a file"
                raise StoreError(f"error: --out {self.root} {where}; pass a folder as --out")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"error: --out {self.root}: cannot create the run store ({exc.strerror or exc}); pass a writable --out"
            ) from None

    def _claim(self, run_dir: Path) -> bool:
        """Take the run's lock; a lock left by a dead process on this host is taken over."""
        lock = run_dir / "lock"
        me = holder_id()
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    holder = lock.read_text()
                except FileNotFoundError:
                    continue
                alive = holder_alive(holder)
                if alive is False or (alive is None and ":" not in holder and _older_than(lock, 10.0)):
                    lock.unlink(missing_ok=True)
                    continue
                return False
            except OSError as exc:
                raise StoreError(
                    f"error: {lock}: cannot take the run's lock ({exc.strerror or exc}); pass a writable --out"
                ) from None
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(me)
            except OSError as exc:
                lock.unlink(missing_ok=True)
                raise write_error(lock, exc, len(me)) from None
            return True
        return False
