"""What a run reads beyond its settings, as content hashes: the rule chain, the corpus and the model file.

A run's settings name its rule and corpus by path; the hashes pin what those paths held. `rule_sha256` covers
every file of the `extends` chain (file name and text) plus the `params` and `base` overrides; `corpus_sha256` is
the sha256 of the prepared corpus's bytes (train.bin then val.bin, equal to the sha256 of the source text, so it is
known before a corpus is prepared); `model_sha256` is the sha256 of a user model file (`--model FILE.py:FUNC`),
None for the bundled GPT. The trainer records them in config.json and refuses a resume whose inputs changed; a
study store keys its runs on them, so an edited input trains new runs and keeps the old results apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalec.errors import InputsChangedError
from scalec.lazy_module import lazy_module

data = lazy_module("scalec.runtime.trainer.data")  # torch: only to hash a corpus, not to read the input names

loader = lazy_module("scalec.compiler.loader")  # the rule file's chain: only when a run hashes its rule by name

INPUT_FIELDS = ("rule_sha256", "corpus_sha256", "model_sha256")
INPUT_NAMES = {"rule_sha256": "the rule chain", "corpus_sha256": "the corpus", "model_sha256": "the model file"}
_FILE_MEMO: dict[tuple, str] = {}


class RunInputsError(InputsChangedError):
    """The inputs a run was keyed on are not the inputs it would read now."""


def _canonical(mapping: Mapping[str, Any] | None) -> str:
    return json.dumps({str(k): str(v) for k, v in (mapping or {}).items()}, sort_keys=True)


def chain_sha256(
    files: Sequence[tuple[str, str]], params: Mapping[str, Any] | None, base: Mapping[str, Any] | None
) -> str:
    """Hash of a rule chain: (file name, text) root first, then the params and base overrides."""
    digest = hashlib.sha256(b"scalec-rule-chain-1\0")
    for name, text in files:
        digest.update(f"{len(name)}:{name}\0{len(text)}:".encode() + text.encode() + b"\0")
    digest.update(f"params={_canonical(params)}\0base={_canonical(base)}".encode())
    return digest.hexdigest()


def rule_sha256(rule: str, params: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None) -> str:
    """`chain_sha256` of the rule file `rule` (path or bundled name) and its ancestors as they are on disk now."""
    files = [(Path(f.path).name, f.source) for f in loader.load_chain(rule)]
    return chain_sha256(files, params, base)


def loaded_rule_sha256(rules: Any, params: Mapping[str, Any] | None, base: Mapping[str, Any] | None) -> str:
    """The chain hash of what a loaded rule was compiled from (a Parameterisation's IR); for a bare generated
    module, a hash of its SOURCE_SHA256 (which covers the chain and params) and `base`."""
    ir = getattr(rules, "ir", None)
    if ir is not None and getattr(ir, "sources", None):
        return chain_sha256([(Path(p).name, t) for p, t in zip(ir.paths, ir.sources, strict=True)], params, base)
    module = getattr(rules, "module", rules)
    source = getattr(module, "SOURCE_SHA256", None)
    if not isinstance(source, str):
        raise RunInputsError("error: the given rules carry no SOURCE_SHA256; load them with scalec.load")
    return hashlib.sha256(f"scalec-module-1\0{source}\0base={_canonical(base)}".encode()).hexdigest()


def _stat_key(paths: Sequence[Path]) -> tuple:
    stats = [p.stat() for p in paths]
    return tuple((str(p.resolve()), s.st_size, s.st_mtime_ns, s.st_ino) for p, s in zip(paths, stats, strict=True))


def files_sha256(paths: Sequence[Path]) -> str:
    """sha256 of the files' bytes concatenated in order; memoised per (path, size, mtime, inode)."""
    key = _stat_key(paths)
    if key not in _FILE_MEMO:
        digest = hashlib.sha256()
        for path in paths:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
        _FILE_MEMO[key] = digest.hexdigest()
    return _FILE_MEMO[key]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of one file (the model file of `--model FILE.py:FUNC`)."""
    return files_sha256([Path(path)])


def prepared_sha256(folder: Path) -> str:
    """sha256 of a prepared corpus: train.bin then val.bin (= the sha256 of the text it was prepared from)."""
    return files_sha256([Path(folder) / "train.bin", Path(folder) / "val.bin"])


def corpus_sha256(corpus: str | None) -> str:
    """The content hash a run on `corpus` will train on, without preparing or fetching anything: the default
    corpus's pinned hash until it is fetched, a prepared folder's bytes, or a text file's or folder's text."""
    if corpus is None or corpus == data.DEFAULT_CORPUS:
        folder = data.cache_root() / data.DEFAULT_CORPUS
        return prepared_sha256(folder) if data.is_prepared(folder) else data.SHAKESPEARE_SHA256
    if data.is_prepared(Path(corpus)):
        return prepared_sha256(Path(corpus))
    src = Path(corpus).expanduser()
    if src.is_file():
        return files_sha256([src])
    return hashlib.sha256(data.read_text_source(src)).hexdigest()


class InputHasher:
    """Input hashes of run configs, each computed once per instance (one study invocation): a rule edited
    while a study runs then no longer matches the hash its runs were keyed on, and those runs are refused."""

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def _once(self, key: str, compute: Any) -> str:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """`config` with rule_sha256 and corpus_sha256 added where missing (model_sha256 is the caller's)."""
        out = dict(config)
        rule, params, base = config.get("rule", "completedp"), config.get("params"), config.get("base")
        if out.get("rule_sha256") is None:
            key = json.dumps(["rule", rule, _canonical(params), _canonical(base)])
            out["rule_sha256"] = self._once(key, lambda: rule_sha256(rule, params, base))
        if out.get("corpus_sha256") is None:
            corpus = config.get("corpus")
            out["corpus_sha256"] = self._once(json.dumps(["corpus", corpus]), lambda: corpus_sha256(corpus))
        return out


def check_planned(config: Mapping[str, Any], actual: Mapping[str, str | None], what: Mapping[str, str]) -> None:
    """Refuse (one line) when a config's preset input hashes differ from what the run would read now;
    `what[field]` names the input (its path)."""
    for name in INPUT_FIELDS:
        planned = config.get(name)
        if planned is not None and actual.get(name) is not None and planned != actual[name]:
            raise RunInputsError(
                f"error: {INPUT_NAMES[name]} {what.get(name, '')} changed after this run was planned (sha256 "
                f"{planned[:12]} then, {actual[name][:12]} now); run the study again so it keys the run on the "
                "inputs as they are now"
            )
