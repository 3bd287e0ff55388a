"""Find rule files (bundled by name, or by path) and load an inheritance chain root-first.

`chain_files` finds the same chain from the files' headers alone (no lark), for the rule cache's key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scalec.dsl import ast
from scalec.dsl.errors import RuleError, did_you_mean
from scalec.lazy_module import lazy_module

parser = lazy_module("scalec.dsl.parser")  # lark loads only when a file is parsed (not on a rule-cache hit)

_HEADER = re.compile(r"^\s*parameterisation\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
# A file's opening, exactly as the grammar reads it (dsl/grammar.lark: `header: "parameterisation" NAME
# ["extends" NAME]`, whitespace and `#` comments ignored); anything else is left to the parser.
_GAP = r"(?:\s|#[^\n]*)"
_OPENING = re.compile(
    rf"{_GAP}*parameterisation{_GAP}+([A-Za-z_][A-Za-z0-9_]*)(?:{_GAP}+extends{_GAP}+([A-Za-z_][A-Za-z0-9_]*))?"
    rf"(?![A-Za-z0-9_])"
)


def bundled_dir() -> Path:
    """The folder of the bundled rule files (`rules/`)."""
    return Path(str(resources.files("scalec.rules")))


def bundled_rules() -> dict[str, Path]:
    """Bundled rule names (file stems) -> paths, sorted by name."""
    return {p.stem: p for p in sorted(bundled_dir().glob("*.scale"))}


def locate(name_or_path: str | Path) -> Path:
    """Resolve a bundled rule name (case-insensitive) or a path to a `.scale` file."""
    text = str(name_or_path)
    p = Path(text)
    if p.suffix == ".scale" or "/" in text or p.exists():
        if not p.is_file():
            raise RuleError(
                ast.Loc(text, 0, 0),
                f"no such rule file '{text}'",
                "pass a path to a .scale file or a bundled name (see `scalec rules`)",
            )
        return p
    bundled = bundled_rules()
    by_lower = {k.lower(): v for k, v in bundled.items()}
    for key, path in _header_names(bundled.values()).items():
        by_lower.setdefault(key, path)
    if text.lower() in by_lower:
        return by_lower[text.lower()]
    raise RuleError(
        ast.Loc(text, 0, 0),
        f"unknown rule '{text}'",
        did_you_mean(text.lower(), by_lower) or f"bundled rules: {', '.join(bundled)}",
    )


def _header_names(paths) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in paths:
        name = _declared_name(path)
        if name is not None:
            names.setdefault(name.lower(), Path(path))
    return names


def _declared_name(path) -> str | None:
    """The name a rule file's header declares (`parameterisation NAME`), or None."""
    try:
        m = _HEADER.search(Path(path).read_text(encoding="utf-8", errors="replace")[:4096])
    except OSError:
        return None
    return m.group(1) if m else None


def _find_parent(child: ast.RuleFile) -> Path:
    """The file of the parent named in `extends`: by file name first (`extends muP` -> mup.scale), beside the child,
    then among the bundled rules; else by the name a file's header declares, beside the child, then bundled.
    Two files that match at the same step are an ambiguity, refused in one line."""
    want = child.parent.lower()
    me = Path(child.path).resolve()
    folders = list(dict.fromkeys(f.resolve() for f in (Path(child.path).parent, bundled_dir())))
    files = {folder: [p for p in sorted(folder.glob("*.scale")) if p.resolve() != me] for folder in folders}
    steps = [(folder, "file name", lambda p: p.stem.lower() == want) for folder in folders]
    steps += [(folder, "header", lambda p: (_declared_name(p) or "").lower() == want) for folder in folders]
    for folder, how, matches in steps:
        found = [p for p in files[folder] if matches(p)]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise RuleError(
                child.parent_loc,
                f"parent '{child.parent}' is ambiguous: {names} in {folder} all match it by {how}",
                "rename or move all but one, or name the parent by its file name",
                child.source,
            )
        if found:
            return found[0]
    candidates = {p.stem.lower(): p for folder in folders for p in files[folder]}
    candidates |= {k: v for folder in folders for k, v in _header_names(files[folder]).items()}
    raise RuleError(
        child.parent_loc,
        f"cannot find parent parameterisation '{child.parent}'",
        did_you_mean(child.parent, candidates) or "put its .scale file beside this one",
        child.source,
    )


def read_header(text: str) -> tuple[str, str | None] | None:
    """(name, parent or None) from a rule file's header without the parser; None when the opening is not plainly
    `parameterisation NAME [extends NAME]` (the caller then parses the file)."""
    m = _OPENING.match(text)
    if m is None:
        return None
    if m.group(2) is None and re.match(rf"{_GAP}*extends(?![A-Za-z0-9_])", text[m.end() :]):
        return None  # `extends` not followed by a plain name: let the parser report it
    return m.group(1), m.group(2)


@dataclass(frozen=True)
class _Header:
    """The header fields `_find_parent` reads, from `read_header` instead of a parse."""

    name: str
    parent: str
    path: str
    source: str
    parent_loc: ast.Loc


def chain_files(name_or_path: str | Path) -> list[tuple[Path, str]] | None:
    """(path, text) of each file `load_chain` would parse, root first, found from the headers alone with the same
    `locate` and `_find_parent`; None when a header is not plain, a parent is missing or the chain cycles (the full
    load then reports it)."""
    try:
        files = [locate(name_or_path)]
        texts: list[str] = []
        names: set[str] = set()
        while True:
            texts.append(files[-1].read_text(encoding="utf-8"))
            header = read_header(texts[-1])
            if header is None or header[0].lower() in names or len(files) > 64:
                return None
            names.add(header[0].lower())
            if header[1] is None:
                return list(reversed(list(zip(files, texts, strict=True))))
            where = ast.Loc(str(files[-1]), 0, 0)
            files.append(_find_parent(_Header(header[0], header[1], str(files[-1]), texts[-1], where)))
    except (OSError, UnicodeDecodeError, RuleError):
        return None


def load_chain(name_or_path: str | Path) -> list[ast.RuleFile]:
    """Parse a file and its `extends` ancestors; returns the chain root first. Cycles are errors."""
    chain: list[ast.RuleFile] = [parser.parse_file(locate(name_or_path))]
    seen = {chain[0].name.lower(): chain[0]}
    while chain[-1].parent is not None:
        child = chain[-1]
        parent = parser.parse_file(_find_parent(child))
        if parent.name.lower() in seen:
            cycle = " -> ".join([f.name for f in chain] + [parent.name])
            raise RuleError(
                child.parent_loc,
                f"cyclic 'extends': {cycle}",
                "one file in the cycle must be a root (no `extends`)",
                child.source,
            )
        seen[parent.name.lower()] = parent
        chain.append(parent)
        if len(chain) > 64:
            raise RuleError(child.parent_loc, "inheritance chain deeper than 64 files", None, child.source)
    return list(reversed(chain))
