"""What a search is: the searched HPs (`Dim`), the fixed run config, the trial budget and where the study
lives. Plain data that round-trips through JSON, so workers on other machines run the same search."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scalec.errors import ScalecError
from scalec.redact import without_password
from scalec.runtime.atomic_io import ReadError, parse_json
from scalec.runtime.studies.run_store import config_key, load_run_fn


class SearchError(ScalecError):
    """Bad search settings (sampler, storage URL, empty space) or a search that cannot go on."""


@dataclass(frozen=True)
class Dim:
    """One searched HP: bounds, log or linear scale, and the start point (the rule's default)."""

    name: str
    low: float
    high: float
    log: bool = True
    default: float | None = None

    def to_unit(self, x: float) -> float:
        """Map a value into [0, 1] (log-space when `log`)."""
        if self.log:
            return (math.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        """Inverse of `to_unit`, clipped into the bounds."""
        u = min(1.0, max(0.0, u))
        if self.log:
            return min(
                self.high,
                max(self.low, math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))),
            )
        return self.low + u * (self.high - self.low)


@dataclass
class SearchSettings:
    """Everything a worker process needs (plain data, JSON round-trips)."""

    dims: list[Dim]
    fixed: dict[str, Any]
    n_trials: int
    out: str
    sampler: str = "tpe"
    storage: str | None = None
    study: str | None = None
    seed: int = 0
    run_fn: str = "scalec.runtime.studies.sweep:train_run_fn"
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 1
    poll_s: float = 1.0
    startup_trials: int = 8

    def __post_init__(self) -> None:
        """Pin the inputs: when the run function declares `key_inputs` (the trainer's does), the fixed run config
        is stamped with the hashes of its rule chain and corpus as they are now (kept when already there, as in
        settings read back), so every worker keys its runs on the same inputs and the study name changes with
        them: an edited rule is a new study, never mixed into the old one."""
        try:
            factory = getattr(load_run_fn(self.run_fn), "key_inputs", None)
        except (ImportError, AttributeError, ValueError):
            factory = None  # importable only where the workers run (their own error then says so)
        if factory is not None:
            self.fixed = factory()(self.fixed)

    def to_json(self) -> str:
        """JSON text of the settings; a storage URL's password is left out (scalec.redact: the workers take it from
        SCALEC_STORAGE_PASSWORD)."""
        return json.dumps({**asdict(self), "storage": without_password(self.storage)})

    @classmethod
    def from_json(cls, text: str, where: str = "search settings") -> SearchSettings:
        """Settings from `to_json` text (read from `where`); text that is not such settings is one SearchError."""
        fix = "write it again with `scalec search ... --out` or pass the search_settings.json it wrote"
        try:
            data = parse_json(text, where, fix)
            data["dims"] = [Dim(**d) for d in data["dims"]]
            return cls(**data)
        except ReadError as exc:
            raise SearchError(str(exc)) from None
        except (TypeError, KeyError, AttributeError) as exc:
            raise SearchError(f"error: {where} is not a scalec search's settings ({exc}); {fix}") from None

    def study_name(self) -> str:
        """The given study name, or one derived from the rule, fixed settings and search space."""
        if self.study:
            return self.study
        ident = {"fixed": self.fixed, "dims": [asdict(d) for d in self.dims], "n": self.n_trials}
        return f"scalec-{self.fixed.get('rule', 'search')}-{config_key(ident)[:8]}"

    def run_config(self, params: Mapping[str, float]) -> dict[str, Any]:
        """The run config of one trial: the fixed settings with the trial's HP values merged in."""
        return {**self.fixed, "hp": {**self.fixed.get("hp", {}), **params}}


def default_dims(hp_space: Mapping[str, Any], patterns: Sequence[str], roles: Sequence[str] | None = None) -> list[Dim]:
    """Dims for HP_SPACE names matching `patterns` (`*` is the only wildcard: `eta`, `lr[*]`, `lr[attn.*]`);
    multipliers limited to `roles`."""
    regexes = [re.compile(".*".join(re.escape(part) for part in p.split("*")) + r"\Z") for p in patterns]
    dims = []
    for name, spec in hp_space.items():
        if not any(r.match(name) for r in regexes):
            continue
        if roles is not None and "[" in name and name.split("[", 1)[1].rstrip("]") not in roles:
            continue
        dims.append(
            Dim(
                name,
                float(spec.low),
                float(spec.high),
                getattr(spec, "scale", "log") == "log",
                float(spec.default),
            )
        )
    if not dims:
        raise SearchError(f"error: --space {','.join(patterns)}: matches no tunable HP of the rule; try 'eta,lr[*]'")
    return dims
