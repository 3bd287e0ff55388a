"""The compiled-rule cache on disk: what `check`, `show`, `compile` and `load` need of a checked rule, without
sympy, lark or jinja2 on a hit.

An entry is one JSON file `$SCALEC_CACHE/rules/<key>.json` (default `~/.cache/scalec/rules`). The key hashes every
file of the rule's `extends` chain (path and text), the params/base overrides and fold, and scalec itself (its
version, the compiler's and grammar's source, and the sympy/lark/jinja2 it runs with): any edit misses. An entry
records its key and the SHA-256 of its contents and is used only when both match, the file is the user's own and
not writable by others, and its module source parses; anything else is a miss and is rebuilt. A cache that cannot
be written is skipped (one warning per process), never an error.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import util
from pathlib import Path

from scalec.compiler.loader import chain_files
from scalec.dsl import ast as dsl_ast
from scalec.version import __version__

FORMAT = 1
_COMPILER_SUFFIXES = (".py", ".j2", ".lark")
_warned: set[str] = set()


@dataclass(frozen=True)
class RuleSummary:
    """A checked rule as data: the generated module and everything `check` and `show` print about it."""

    name: str
    lineage: tuple[str, ...]
    paths: tuple[str, ...]
    source: str  # the generated module (compiler/codegen.py)
    warnings: tuple[str, ...]  # the checks' warnings (compiler/checks.py)
    region: tuple[str, ...]  # region_lines (compiler/region.py)
    width_class: str  # desiderata (compiler/analysis.py)
    depth_class: str
    exponents: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]  # exponent_table: (subject, hp, axis->text)
    check_lines: tuple[str, ...] = ()  # what `check` prints under the header: expectations held/broken, failures
    declared_lines: tuple[str, ...] = ()  # where each declared role's rules came from (`show`)
    broken: bool = False  # an `expect` line is broken (check exits 1; such a rule is never cached)

    def exponent(self, subject: str, hp: str) -> dict[str, str]:
        """One exponent-table row's symbolic exponents by axis."""
        for s, h, cells in self.exponents:
            if s == subject and h == hp:
                return dict(cells)
        raise KeyError((subject, hp))

    @classmethod
    def from_json(cls, data: Mapping) -> RuleSummary:
        """From `asdict` JSON; raises ValueError/TypeError/KeyError on anything malformed."""
        strings = ("name", "source", "width_class", "depth_class")
        lists = ("lineage", "paths", "warnings", "region", "check_lines", "declared_lines")
        if set(data) != set(strings + lists + ("exponents", "broken")) or not isinstance(data["broken"], bool):
            raise ValueError("unexpected fields")
        if not all(isinstance(data[k], str) for k in strings):
            raise TypeError("a text field is not text")
        if not all(isinstance(v, str) for k in lists for v in data[k]):
            raise TypeError("a list field is not text")
        rows = tuple((str(s), str(h), tuple((str(a), str(t)) for a, t in cells)) for s, h, cells in data["exponents"])
        return cls(
            **{k: data[k] for k in strings}, **{k: tuple(data[k]) for k in lists}, exponents=rows, broken=data["broken"]
        )


def cache_dir() -> Path:
    """`$SCALEC_CACHE/rules`, else `~/.cache/scalec/rules`."""
    root = os.environ.get("SCALEC_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "scalec") / "rules"


@functools.lru_cache(maxsize=1)
def scalec_fingerprint() -> str:
    """scalec's version, the source of the compiler and grammar, and the versions of sympy, lark and jinja2 (read
    from their files, not imported): a change to any of them can change what a check finds or what code says."""
    h = hashlib.sha256(f"scalec {__version__} format {FORMAT} python {sys.version_info[:2]}".encode())
    here = Path(__file__).parent
    for folder in (here, here / "templates", Path(dsl_ast.__file__).parent):
        for path in sorted(folder.iterdir()):
            if path.suffix in _COMPILER_SUFFIXES:
                h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for package, version_file in (("sympy", "release.py"), ("lark", "__init__.py"), ("jinja2", "__init__.py")):
        spec = util.find_spec(package)
        origin = Path(spec.origin).parent / version_file if spec and spec.origin else None
        h.update(package.encode() + (origin.read_bytes() if origin and origin.is_file() else b"missing"))
    return h.hexdigest()


def rule_key(
    name_or_path: str | Path, params: Mapping[str, str] | None, base: Mapping[str, int] | None, fold: bool
) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """(key, the chain's (path, text)), or None when the chain cannot be read without the parser."""
    chain = chain_files(name_or_path)
    if chain is None:
        return None
    h = hashlib.sha256(scalec_fingerprint().encode())
    for path, text in chain:
        h.update(b"\0file\0" + str(path).encode() + b"\0" + text.encode())
    for label, values in (("params", params), ("base", base)):
        h.update(f"\0{label}\0{json.dumps(sorted((str(k), str(v)) for k, v in (values or {}).items()))}".encode())
    h.update(f"\0fold\0{bool(fold)}".encode())
    return h.hexdigest(), tuple((str(p), t) for p, t in chain)


def _digest(summary: dict) -> str:
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()


def read(key: str) -> RuleSummary | None:
    """The entry under `key` if it is intact and trusted, else None (a corrupt entry is removed)."""
    path = cache_dir() / f"{key}.json"
    try:
        info = path.stat()
    except OSError:
        return None
    try:
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
            raise ValueError("not the user's own file, or writable by others")
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry.get("format") != FORMAT or entry.get("key") != key or entry.get("sha256") != _digest(entry["rule"]):
            raise ValueError("key or checksum mismatch")
        summary = RuleSummary.from_json(entry["rule"])
        ast.parse(summary.source)
        return summary
    except (OSError, ValueError, TypeError, KeyError, SyntaxError, RecursionError, MemoryError) as exc:
        _warn_once("corrupt", f"scalec: warning: rule cache entry {path} is unusable ({exc}); rebuilding it")
        discard(key)
        return None


def write(key: str, summary: RuleSummary) -> None:
    """Store `summary` under `key` (atomically, readable by the user only); a failure warns once and is skipped."""
    folder = cache_dir()
    data = asdict(summary)
    entry = {"format": FORMAT, "key": key, "sha256": _digest(data), "rule": data}
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f)
        os.replace(tmp, folder / f"{key}.json")
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        _warn_once(
            "write",
            f"scalec: warning: cannot write the rule cache {folder} ({exc.strerror or exc}); working without it "
            "(point SCALEC_CACHE at a writable folder)",
        )


def discard(key: str) -> None:
    """Remove the entry under `key`, if any."""
    try:
        (cache_dir() / f"{key}.json").unlink(missing_ok=True)
    except OSError:
        pass


def _warn_once(kind: str, line: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        print(line, file=sys.stderr)
