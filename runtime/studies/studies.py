"""The studies as Python functions: `sweep`, `search` and `transfer` of a rule's HPs, on the bundled GPT, on your
model (`build(width, depth)` in the bundled loop) or with your training function (`objective`); the CLI's sweep,
search and transfer commands parse their options into these and print what they return.

Run settings are TrainConfig's names (width, depth, batch, duration, steps, seq_len, seed, device, corpus, ...);
`hp` is a list of `--hp` specs (`"eta=2^-10..2^-4:7"`) or a dict {name: value | list of values | "lo..hi:K"}.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalec.runtime.atomic_io import write_text_atomic
from scalec.runtime.plan.binding import bind
from scalec.runtime.studies.grid_study import grid_runner
from scalec.runtime.studies.hp_grid import HPRange, parse_hp_specs, resolve_specs
from scalec.runtime.studies.run_args import DEFAULTS, RunArgs
from scalec.runtime.studies.run_store import RunRecord, RunStore
from scalec.runtime.studies.search import SearchResult, run_search
from scalec.runtime.studies.search_samplers import SAMPLERS
from scalec.runtime.studies.search_settings import Dim, SearchError, SearchSettings, default_dims
from scalec.runtime.studies.sweep import (
    StudySpecError,
    SweepRow,
    SweepSpec,
    check_shapes,
    load_rules,
    rows_markdown,
    run_sweep,
    split_hp_specs,
    summarize,
    sweep_configs,
    train_run_fn,
)
from scalec.runtime.studies.transfer import RuleResult, TransferSpec, run_transfer, transfer_configs
from scalec.runtime.studies.user_model import UserModel, UserModelError, model_settings, resolve
from scalec.runtime.trainer.gpt import ROLES

OnRecord = Callable[[int, RunRecord], None]
Runner = Callable[[list[dict[str, Any]], RunStore], list[RunRecord]]
AXES = ("width", "depth", "batch", "duration")


def hp_items(hp: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """`--hp` spec strings from a list of specs or a dict {name: value | [values] | "lo..hi:K"}."""
    if hp is None:
        return []
    if isinstance(hp, Mapping):
        items = []
        for name, value in hp.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(repr(float(v)) for v in value)
            elif not isinstance(value, str):
                value = repr(float(value))
            items.append(f"{name}={value}")
        return items
    return [str(item) for item in hp]


def user_failure(record: RunRecord) -> UserModelError | None:
    """The one-line error of a run the user's model or objective failed (the study stops on it; finished runs stay
    in the store and a rerun resumes), None for any other record."""
    if record.status == "failed" and (record.error or "").startswith(f"{UserModelError.__name__}: "):
        return UserModelError(record.error.splitlines()[0].removeprefix(f"{UserModelError.__name__}: "))
    return None


def _stop_on_user_failure(on_record: OnRecord | None) -> OnRecord:
    def report(i: int, record: RunRecord) -> None:
        if on_record is not None:
            on_record(i, record)
        failure = user_failure(record)
        if failure is not None:
            raise failure

    return report


@dataclass
class SweepStudy:
    """A checked sweep: its run configs, the swept HP names and the run store; `run()` trains what is not done."""

    configs: list[dict[str, Any]]
    names: list[str]
    out: Path
    seeds: int = 1

    def run(self, on_record: OnRecord | None = None, runner: Runner | None = None) -> list[SweepRow]:
        """Train (or reuse) every run, write `<out>/sweep.md`; rows best first. `runner` (`grid_study.grid_runner`)
        shares the runs out among worker processes instead."""
        store = RunStore(self.out)
        if runner is not None:
            records = runner(self.configs, store)
        else:
            records = run_sweep(self.configs, store, train_run_fn, _stop_on_user_failure(on_record))
        rows = summarize(records)
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out / "sweep.md", rows_markdown(rows, self.names) + "\n")
        return rows


def sweep_study(
    rules: Any,
    hp: Sequence[str],
    run: RunArgs,
    out: str | Path,
    seeds: int = 1,
    random: int | None = None,
    sample_seed: int = 0,
) -> SweepStudy:
    """Check a sweep before anything runs: HP specs against the rule, every config's shape in the rule's region."""
    if seeds < 1 or (random is not None and random < 1):
        raise StudySpecError("error: --seeds and --random must be at least 1")
    fixed_hp, swept = split_hp_specs(hp, rules)
    if random is None:
        for s in swept:
            s.grid()  # a range without a point count is an error before anything runs
    fixed = run.replace(hp={**run.settings.get("hp", {}), **fixed_hp}).config()
    configs = sweep_configs(SweepSpec(fixed, swept, random, seeds, sample_seed))
    check_shapes(rules, configs)
    return SweepStudy(configs, [s.name for s in swept], Path(out), seeds)


@dataclass
class TransferStudy:
    """A checked transfer study: the spec, its run configs and where it writes."""

    spec: TransferSpec
    configs: list[dict[str, Any]]
    out: Path
    title: str | None = None
    bindings: dict[str, Any] = field(default_factory=dict)

    def run(self, on_record: OnRecord | None = None, runner: Runner | None = None) -> list[RuleResult]:
        """Train (or reuse) every run; write transfer.{json,md,png} (transfer.json also records the binding of
        each rule's first run at each size when the study trains your model). `runner` as `SweepStudy.run`."""
        on_record = _stop_on_user_failure(on_record)
        results = run_transfer(self.spec, self.out, train_run_fn, on_record, self.title, runner)
        bindings = transfer_bindings(self.spec, self.out)
        if bindings:
            path = self.out / "transfer.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), **bindings}, indent=2) + "\n")
        return results


def transfer_bindings(spec: TransferSpec, out: Path) -> dict[str, Any]:
    """{"model", "model_sha256", "binding": {rule: {size: binding}}} from the study's stored runs ({} on the GPT)."""
    fixed = spec.fixed
    if not fixed.get("model"):
        return {}
    bindings: dict[str, dict[str, Any]] = {}
    for record in RunStore(out / "store").records():
        c = record.config
        if c.get("model") != fixed.get("model") or c.get("model_sha256") != fixed.get("model_sha256"):
            continue
        binding = record.summary.get("binding")
        if binding is not None:
            bindings.setdefault(str(c["rule"]), {}).setdefault(f"{c[spec.config_field]:g}", binding)
    keys = ("model", "model_sha256", "roles", "objective", "objective_sha256")
    return {**{k: fixed[k] for k in keys if fixed.get(k)}, "binding": bindings}


def doubling_sizes(base: int, target: int) -> list[int]:
    """base, 2 base, 4 base, ... up to target (target always included)."""
    sizes, s = [], base
    while s < target:
        sizes.append(s)
        s *= 2
    return [*sizes, target]


def transfer_study(
    rules: Sequence[str],
    hp: Sequence[str],
    base: Mapping[str, int],
    target: Mapping[str, int],
    run: RunArgs,
    out: str | Path,
    axis: str | None = None,
    sizes: Sequence[int] | None = None,
    seeds: int = 1,
    title: str | None = None,
    loaded: Mapping[str, Any] | None = None,
) -> TransferStudy:
    """Check a transfer study of one swept HP from the `base` shape to `target` along one axis (TrainConfig names:
    width, depth, batch, duration) for each rule (the last is the subject, the others compared); `run` holds the
    other settings (its width/depth/batch/duration are the defaults of the shapes)."""
    params = run.settings.get("params") or None
    loaded = dict(loaded) if loaded else {r: load_rules(r, params) for r in rules}
    given = run.settings
    shape: dict[str, int | None] = {a: given.get(a, DEFAULTS[a]) for a in AXES}
    shape.update(base)
    steps = given.get("steps")
    if axis is None:
        differing = [f for f in target if target[f] != shape[f]]
        if len(differing) != 1:
            raise StudySpecError(
                f"error: --target-shape '{_shape_text(target)}': give exactly one axis that differs "
                f"from --base-shape, or pick one with --axis"
            )
        axis = differing[0]
    if axis not in AXES:
        raise StudySpecError(f"error: --axis {axis}: choose width, depth, batch or duration")
    if axis not in target:
        raise StudySpecError(f"error: --target-shape '{_shape_text(target)}': has no value for the --axis {axis}")
    base_size = shape[axis]
    if base_size is None:
        raise StudySpecError(f"error: --base-shape '{_shape_text(base)}': give the base {axis}")
    size_list = list(sizes) if sizes else doubling_sizes(base_size, target[axis])
    if size_list[0] != base_size:
        raise StudySpecError(
            f"error: --sizes '{','.join(map(str, size_list))}': the first size must be the base {axis} {base_size}"
        )
    if axis in ("batch", "duration") and shape["duration"] is None:
        if steps is None:
            raise StudySpecError("error: batch/duration transfer needs --duration (or --steps at the base)")
        shape["duration"], steps = steps * shape["batch"], None
    specs = parse_hp_specs(list(hp))
    swept: list[HPRange] = []
    fixed_hp: dict[str, float] = {}
    for r in rules:  # every rule must know the HPs, with values in their domains
        resolved = resolve_specs(specs, loaded[r].module.HP_SPACE, loaded[r].name)
        swept = [s for s in resolved if s.is_range or len(s.values) > 1]
        fixed_hp = {s.name: s.values[0] for s in resolved if s not in swept}
    if len(swept) != 1:
        raise StudySpecError(
            "error: --hp: give exactly one swept HP (a grid such as eta=2^-10..2^-4:7); "
            "single values are fixed overrides"
        )
    swept[0].grid()
    fixed = run.replace(rule=rules[-1], **shape, steps=steps, hp={**given.get("hp", {}), **fixed_hp}).config()
    fixed.pop("rule")
    spec = TransferSpec(list(rules), axis, size_list, swept[0], fixed, seeds, {r: loaded[r].name for r in loaded})
    configs = transfer_configs(spec)
    for r in rules:
        check_shapes(loaded[r], [c for c in configs if c["rule"] == r])
    return TransferStudy(spec, configs, Path(out), title)


def _shape_text(shape: Mapping[str, Any]) -> str:
    letters = {"width": "n", "depth": "L", "batch": "B", "duration": "D"}
    return ",".join(f"{letters.get(k, k)}={v}" for k, v in shape.items())


def model_roles(run: RunArgs, rules: Any) -> list[str] | None:
    """The roles a study's model has (the bundled GPT's, or --model's bound on the meta device); None when binding
    fails there (then every role's multiplier is searched, and the first run reports the failure in one line)."""
    given = run.settings
    if not given.get("model"):
        return [r for r in ROLES if r != "qk_norm" or given.get("qk_norm")]
    user = UserModel(resolve(given["model"], "--model", "(width, depth)"), given.get("roles") or None)
    width, depth = int(given.get("width", 128)), int(given.get("depth", 2))
    model = user.make(width, depth, meta=True)
    try:
        return sorted({b.role for b in bind(model, roles=rules.module.ROLES, **user.binding(model, width, depth))})
    except Exception:  # noqa: BLE001 - the run itself binds again and reports any failure in one line
        return None


def search_settings(
    rules: Any,
    run: RunArgs,
    out: str | Path,
    space: str | Sequence[str] = "eta,lr[*]",
    hp: Sequence[str] = (),
    sampler: str = "tpe",
    trials: int = 32,
    storage: str | None = None,
    study: str | None = None,
    sampler_seed: int = 0,
) -> SearchSettings:
    """The search's settings, checked: the searched HPs (names or globs over HP_SPACE, limited to the roles the
    model has; `hp` ranges add or narrow them, single values fix them) and the fixed run config."""
    if sampler not in SAMPLERS:
        raise SearchError(f"error: --sampler {sampler}: unknown; choose one of {', '.join(SAMPLERS)}")
    if trials < 1:
        raise SearchError("error: --trials and --workers must be at least 1")
    fixed_hp, ranges = split_hp_specs(hp, rules)
    patterns = [p.strip() for p in (space.split(",") if isinstance(space, str) else space) if p.strip()]
    roles = model_roles(run, rules)
    dims = {d.name: d for d in default_dims(rules.module.HP_SPACE, patterns, roles) if d.name not in fixed_hp}
    for r in ranges:
        if not r.is_range:
            raise SearchError(f"error: --hp '{r.text}': search takes a range NAME=LO..HI or one fixed value")
        spec = rules.module.HP_SPACE[r.name]
        default = spec.default if r.low <= spec.default <= r.high else None
        dims[r.name] = Dim(r.name, r.low, r.high, r.scale == "log", default)
    if not dims:
        raise SearchError("error: --space: nothing left to search once the fixed --hp values are removed")
    fixed = run.replace(hp={**run.settings.get("hp", {}), **fixed_hp}).config()
    check_shapes(rules, [fixed])
    return SearchSettings(list(dims.values()), fixed, trials, str(out), sampler, storage, study, sampler_seed)


# ---------------------------------------------------------------------------------------------- the Python API


def _run_args(rule: Any, build: Any, objective: Any, roles: Any, params: Any, settings: Mapping[str, Any]) -> RunArgs:
    if objective is not None and build is None:
        raise UserModelError("error: objective= trains the model build= makes; pass build=FUNC(width, depth) too")
    if not isinstance(rule, (str, Path)):
        raise StudySpecError(f"error: rule={rule!r}: give a bundled rule name or a .scale path (runs load it by name)")
    return RunArgs(rule=str(rule), params=dict(params or {}), **settings, **model_settings(build, roles, objective))


def sweep(
    rule: Any,
    hp: Sequence[str] | Mapping[str, Any],
    *,
    build: Any = None,
    objective: Any = None,
    roles: Mapping[str, str] | None = None,
    out: str | Path = "sweeps/sweep",
    seeds: int = 1,
    random: int | None = None,
    sample_seed: int = 0,
    params: Mapping[str, str] | None = None,
    on_record: OnRecord | None = None,
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    **settings: Any,
) -> list[SweepRow]:
    """Sweep `rule`'s HPs: every grid point (or `random` samples) x `seeds`, each run once and kept in `out` (a
    rerun resumes). `build(width, depth)` is your model (default: the bundled GPT), `objective(model, optimizer,
    run) -> loss` your training loop (default: the bundled loop); `settings` are TrainConfig's (width, depth,
    steps, ...). Returns rows best first (`.hp`, `.loss`, `.status`). `workers` > 1 or a `storage` (journal file
    or RDB URL, as `search`) shares the runs out among worker processes (build/objective then as 'FILE.py:FUNC')."""
    run = _run_args(rule, build, objective, roles, params, settings)
    rules = load_rules(str(rule), params)
    study_ = sweep_study(rules, hp_items(hp), run, out, seeds, random, sample_seed)
    return study_.run(on_record, shared_runner(workers, storage, study))


def transfer(
    rule: Any,
    hp: Sequence[str] | Mapping[str, Any],
    base: Mapping[str, int],
    target: Mapping[str, int],
    *,
    build: Any = None,
    objective: Any = None,
    roles: Mapping[str, str] | None = None,
    vs: Sequence[str] = (),
    axis: str | None = None,
    sizes: Sequence[int] | None = None,
    seeds: int = 1,
    out: str | Path = "sweeps/transfer",
    title: str | None = None,
    params: Mapping[str, str] | None = None,
    on_record: OnRecord | None = None,
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    **settings: Any,
) -> list[RuleResult]:
    """Does the best value of one HP at the `base` shape ({"width": 64}) stay best at `target` ({"width": 256})?
    Sweeps it at each size for `rule` (and the rules in `vs`), writes transfer.{json,md,png} into `out`; results
    per rule (optimum per size, drift in octaves, the transfer gap). `build`/`objective`/`settings` as `sweep`."""
    run = _run_args(rule, build, objective, roles, params, settings)
    names = [*vs, run.settings["rule"]]
    loaded = {n: load_rules(n, params) for n in vs}
    loaded[run.settings["rule"]] = load_rules(str(rule), params)
    checked = transfer_study(names, hp_items(hp), base, target, run, out, axis, sizes, seeds, title, loaded)
    return checked.run(on_record, shared_runner(workers, storage, study))


def shared_runner(
    workers: int, storage: str | None, study: str | None = None, progress: Callable[..., None] | None = None
) -> Runner | None:
    """The shared-out runner (`grid_study`) when `workers` > 1 or a `storage` is given, else None (in-process)."""
    if workers < 1:
        raise StudySpecError("error: --workers must be at least 1")
    if workers == 1 and storage is None:
        return None

    return grid_runner(storage, workers, study, progress)


def search(
    rule: Any,
    space: str | Sequence[str] = "eta,lr[*]",
    *,
    build: Any = None,
    objective: Any = None,
    roles: Mapping[str, str] | None = None,
    hp: Sequence[str] | Mapping[str, Any] | None = None,
    trials: int = 32,
    sampler: str = "tpe",
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    sampler_seed: int = 0,
    out: str | Path = "sweeps/search",
    params: Mapping[str, str] | None = None,
    **settings: Any,
) -> SearchResult:
    """Optuna search of `rule`'s HPs (`space`: names or globs over its HP_SPACE) from the rule's defaults, `trials`
    complete runs kept in `out`'s run store (a rerun resumes). `build`/`objective`/`settings` as `sweep`;
    `run.report(step, loss)` in your objective lets the pruner stop unpromising trials. Several `workers` need
    build/objective as 'FILE.py:FUNC' (worker processes import them)."""
    run = _run_args(rule, build, objective, roles, params, settings)
    if workers > 1 and any(str(run.settings.get(k, "")).startswith("python:") for k in ("model", "objective")):
        raise SearchError("error: workers > 1 import build and objective in new processes; pass them as 'FILE.py:FUNC'")
    rules = load_rules(str(rule), params)
    config = search_settings(rules, run, out, space, hp_items(hp), sampler, trials, storage, study, sampler_seed)
    return run_search(config, workers)


def best_hp(rows: Sequence[SweepRow]) -> dict[str, float] | None:
    """The HP point of the best finished row, None when none finished."""
    finite = [r for r in rows if math.isfinite(r.loss)]
    return dict(min(finite, key=lambda r: r.loss).hp) if finite else None
