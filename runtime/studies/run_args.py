"""The run settings every run of a sweep, search or transfer study shares, as one object whose names and defaults
are TrainConfig's (the one list of run settings); `config()` is the plain run config the RunStore keys and the
trainer reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.trainer.train_config import TrainConfig, TrainConfigError

# Written into every run config (so a config names its shape and HPs even where they equal the defaults).
ALWAYS = ("rule", "width", "depth", "batch", "seq_len", "head_dim", "hp", "seed")
# Set per run by the study or the run store, never shared.
PER_RUN = ("out_dir", "resume", "progress")
DEFAULTS = {
    f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    for f in dataclasses.fields(TrainConfig)
}


class RunArgsError(ScalecError):
    """Run settings that cannot make a training run."""


class RunArgs:
    """Model shape, training length, data and device of a study's runs: TrainConfig field names, and a setting
    not given (or None) takes TrainConfig's default."""

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(DEFAULTS) | set(settings) & set(PER_RUN))
        if unknown:
            known = sorted(set(DEFAULTS) - set(PER_RUN))
            raise RunArgsError(f"error: unknown run setting(s) {unknown}; known: {known}")
        self.settings: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}

    def __repr__(self) -> str:
        return f"RunArgs({', '.join(f'{k}={v!r}' for k, v in self.settings.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunArgs) and self.settings == other.settings

    def replace(self, **changes: Any) -> RunArgs:
        """A copy with some settings changed (None: back to the default)."""
        return RunArgs(**{**self.settings, **changes})

    def config(self) -> dict[str, Any]:
        """The run config: ALWAYS keys plus every other setting that differs from TrainConfig's default (so configs
        stay short and their keys stable), validated by TrainConfig before anything runs."""
        given = self.settings
        if given.get("duration") is None and given.get("steps") is None:
            raise RunArgsError("error: give the training length: --duration TOKENS or --steps N")
        config: dict[str, Any] = {}
        for name in ALWAYS:
            if name == "head_dim" and given.get("model") and given.get("head_dim") is None:
                config[name] = None  # a --model's own head dimension (its config or head_dim attribute)
                continue
            value = given.get(name, DEFAULTS[name])
            if value is not None:
                config[name] = dict(value) if isinstance(value, Mapping) else value
        length = "duration" if given.get("duration") is not None else "steps"
        config[length] = given[length]
        for name, value in given.items():
            if name not in config and name not in ("duration", "steps") and value != DEFAULTS[name]:
                config[name] = dict(value) if isinstance(value, Mapping) else value
        try:
            TrainConfig(**config)  # validates batch/seq_len/head_dim/length
        except TrainConfigError as exc:
            raise RunArgsError(str(exc)) from None
        return config
