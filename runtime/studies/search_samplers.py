"""Optuna samplers by name: `tpe`, `cmaes`, `random`, and `trust-region`, a random search in a box around the
incumbent in normalised log space that halves its radius after `patience` trials without improvement and
doubles it (up to the start radius) on improvement -- the robust local search Complete^(d)P (arXiv 2512.22382)
recommends where the divergence boundary is jagged. Its state is a pure function of the study's trials, so it
works across workers."""

from __future__ import annotations

import importlib.util
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from scalec.runtime.studies.search_settings import Dim, SearchError

SAMPLERS = ("tpe", "cmaes", "random", "trust-region")


class TrustRegionSampler:
    """Random search in a shrinking box around the best trial so far (see the module docstring)."""

    def __init__(
        self,
        dims: Sequence[Dim],
        seed: int = 0,
        radius: float = 0.25,
        patience: int = 4,
        min_radius: float = 1 / 64,
    ) -> None:
        import optuna

        self.dims = list(dims)
        self.radius0, self.patience, self.min_radius = radius, patience, min_radius
        self._rng = random.Random(seed)
        self._dists = {d.name: optuna.distributions.FloatDistribution(d.low, d.high, log=d.log) for d in dims}
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def state(self, trials: Sequence[Any]) -> tuple[dict[str, float], float]:
        """(centre in unit coordinates, radius) after replaying the COMPLETE trials in order."""
        centre = {
            d.name: d.to_unit(
                d.default if d.default is not None else math.sqrt(d.low * d.high) if d.log else (d.low + d.high) / 2
            )
            for d in self.dims
        }
        best, radius, stall = math.inf, self.radius0, 0
        for t in sorted(trials, key=lambda t: t.number):
            if t.value is None or not all(d.name in t.params for d in self.dims):
                continue
            if t.value < best:
                if math.isfinite(best):
                    radius = min(self.radius0, radius * 2)
                best, stall = t.value, 0
                centre = {d.name: d.to_unit(t.params[d.name]) for d in self.dims}
            else:
                stall += 1
                if stall >= self.patience:
                    radius, stall = max(self.min_radius, radius / 2), 0
        return centre, radius

    # optuna.samplers.BaseSampler protocol
    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return dict(self._dists)

    def sample_relative(self, study: Any, trial: Any, search_space: Mapping[str, Any]) -> dict[str, Any]:
        import optuna

        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        centre, radius = self.state(done)
        return {d.name: d.from_unit(centre[d.name] + self._rng.uniform(-radius, radius)) for d in self.dims}

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self._fallback.sample_independent(study, trial, name, dist)

    def before_trial(self, study: Any, trial: Any) -> None:
        pass

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        pass

    def reseed_rng(self) -> None:
        self._rng = random.Random()


def make_sampler(name: str, dims: Sequence[Dim], seed: int = 0, startup_trials: int = 8) -> Any:
    """An Optuna sampler by name (`tpe`, `cmaes`, `random`, `trust-region`)."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials, multivariate=True, constant_liar=True
        )
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise SearchError("error: --sampler cmaes needs the `cmaes` package; pip install cmaes")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "trust-region":
        return as_optuna_sampler(TrustRegionSampler(dims, seed=seed))
    raise SearchError(f"error: --sampler {name}: unknown; choose one of {', '.join(SAMPLERS)}")


def as_optuna_sampler(impl: TrustRegionSampler) -> Any:
    """Wrap a sampler implementing the BaseSampler protocol in an optuna.samplers.BaseSampler subclass."""
    import optuna

    class _Sampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return impl.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return impl.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return impl.sample_independent(study, trial, param_name, param_distribution)

    sampler = _Sampler()
    sampler.impl = impl  # type: ignore[attr-defined]
    return sampler
