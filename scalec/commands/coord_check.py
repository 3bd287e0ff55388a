"""`scalec coord-check RULE [--model FILE.py:FUNC]`: empirical width/depth coordinate check of one rule file on
the bundled GPT or on your own model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import real, whole
from scalec.commands._progress import StudyProgress
from scalec.compiler.module_inputs import domain_violation
from scalec.compiler.parameterisation import load
from scalec.errors import ScalecError
from scalec.lazy_module import lazy_module
from scalec.parsing import parse_hp_specs, parse_hp_values, parse_ints, parse_params
from scalec.runtime.atomic_io import check_output_dir

# Modules that import torch or sympy load when the command runs, not for `--help` (which needs only the options).
analysis = lazy_module("scalec.compiler.analysis")
coord = lazy_module("scalec.runtime.studies.coord_check")
subjects = lazy_module("scalec.runtime.studies.coord_subject")

STATUS_STYLE = {"pass": "green", "lazy": "yellow", "unstable": "bold red", "diverged": "bold red"}


class CoordCheckArgsError(ScalecError):
    """A bad coord-check command-line value."""


def hp_overrides(rules: Any, lr: float | None, hp: list[str] | None) -> dict[str, float]:
    """Fixed HP overrides by name from --lr (eta) and --hp NAME=VALUE, checked against the rule's HP_SPACE."""
    out = parse_hp_values(parse_hp_specs(hp), rules, "coord-check")
    if lr is not None:
        reason = domain_violation("eta", lr, rules.module.HP_SPACE["eta"])
        if reason is not None:
            raise CoordCheckArgsError(f"error: --lr {lr:g}: {reason}")
        out["eta"] = lr
    out.setdefault("eta", _default_eta(rules))
    return out


def check_sizes(rules: Any, cfg: Any) -> None:
    """Every width (at the sweep's depth) and depth (at its width) inside the rule's region, before any model."""
    depth, width = cfg.depth_for_width_sweep, cfg.width_for_depth_sweep
    head = {"d_head": cfg.head_dim} if cfg.head_dim is not None else {}  # None: --model's own, read later
    for n in cfg.widths:
        rules.shape(n=n, L=depth, **head)
    for L in cfg.depths:
        rules.shape(n=width, L=L, **head)


def _default_eta(rules: Any) -> float:
    """The rule's own default eta (where a first run works); DEFAULT_ETA for a rule without an eta."""
    spec = rules.module.HP_SPACE.get("eta")
    return float(spec.default) if spec is not None else coord.DEFAULT_ETA


def claimed_sweeps(rules: Any) -> list[str]:
    """The sweeps whose coordinate check the rule's theory claims: width when its width desiderata all hold,
    depth when its depth desiderata all hold (a residual multiplier m_L^-alpha with the block rules)."""
    d = analysis.desiderata(rules)
    return [sweep for sweep in ("width", "depth") if d.passes(sweep)]


def build_config(
    widths: str,
    depths: str,
    base_width: int | None,
    base_depth: int | None,
    steps: int,
    seeds: int,
    batch: int,
    seq_len: int,
    head_dim: int | None,
    hp: dict[str, float],
    model: str | None = None,
) -> Any:
    """A CoordCheckConfig from CLI values; --head-dim defaults to 32 for the bundled GPT and to the model's own
    (read from it) for --model. One size on an axis means no sweep along it."""
    return coord.CoordCheckConfig(
        widths=parse_ints(widths, "--widths"),
        depths=parse_ints(depths, "--depths"),
        base_width=base_width,
        base_depth=base_depth,
        steps=steps,
        seeds=seeds,
        batch=batch,
        seq_len=seq_len,
        head_dim=head_dim if head_dim is not None or model is not None else 32,
        hp=hp,
    )


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Pin torch's intra-op threads for the block (None leaves torch's setting), then restore them."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_and_save(
    rules: Any, cfg: Any, data: tuple[Any, Any], out: Path, label: str | None = None, subject: Any = None
) -> tuple[Any, dict[str, Path]]:
    """Run a coordinate check on `data` (from `load_batches`) of the bundled GPT or `subject` (from
    `model_subject`), write coord_check.json / .csv and coord_<sweep>.png into `out`; return
    (CoordCheckResult, {sweep: png})."""
    batches, probe = data
    points = sum(len(cfg.widths if axis == "width" else cfg.depths) for axis in cfg.sweeps)
    started = 0

    def progress(msg: str) -> None:  # called as each (width, depth) point starts: the previous one is done
        nonlocal started
        if started:
            bar.advance()
        started += 1

    with StudyProgress(f"coord-check {label or rules.name}", points) as bar:
        result = coord.run_coord_check(rules, cfg, batches, probe, progress=progress, subject=subject)
        bar.advance(runs=1 if started else 0)
    return result, result.save(out)


def model_subject(model: str | None, roles: Path | None) -> Any:
    """The ModelSubject of --model FILE.py:FUNC [--roles ROLES.json], or None for the bundled GPT."""
    if model is None:
        if roles is not None:
            raise CoordCheckArgsError("error: --roles binds the parameters of --model FILE.py:FUNC; pass --model too")
        return None

    return subjects.ModelSubject(
        subjects.load_factory(model), subjects.load_roles(roles) if roles is not None else None, label=model
    )


def verdict_table(results: list[tuple[str, Any]], sweep: str) -> Any:
    """A rich table: a row per module, a column per rule, cells 'status xR (slope)' of the update RMS."""
    from rich.table import Table

    table = Table(
        title=f"coordinate check vs {sweep}: status, update-RMS ratio across the range (log-log slope)",
        title_justify="left",
    )
    table.add_column("module")
    for label, _ in results:
        table.add_column(label)
    for module in coord.MODULES:
        cells = []
        for _, r in results:
            v = r.verdict(sweep, module)
            cells.append(f"[{STATUS_STYLE[v.status]}]{v.status}[/] x{v.update_ratio:.2g} ({v.update_slope:+.2f})")
        table.add_row(module, *cells)
    table.add_row("[bold]all[/]", *[f"[{STATUS_STYLE[r.status(sweep)]}]{r.status(sweep)}[/]" for _, r in results])
    return table


def register(app: typer.Typer) -> None:
    """Add `coord-check` to the CLI."""

    @app.command("coord-check")
    @guarded
    def coord_check(
        rule: Annotated[str, typer.Argument(help="Bundled rule name (sp, mup, completep, ...) or a .scale path.")],
        widths: Annotated[str, typer.Option(help="Widths of the width sweep (at the base depth).")] = "64,128,256,512",
        depths: Annotated[str, typer.Option(help="Depths of the depth sweep (at the base width).")] = "2,4,8,16",
        base_width: Annotated[
            int | None, typer.Option(parser=whole(), help="Width of the depth sweep (default: min of --widths).")
        ] = None,
        base_depth: Annotated[
            int | None, typer.Option(parser=whole(), help="Depth of the width sweep (default: min of --depths).")
        ] = None,
        steps: Annotated[int, typer.Option(parser=whole(), help="Training steps per model.")] = 10,
        seeds: Annotated[int, typer.Option(parser=whole(), help="Seeds averaged per size.")] = 3,
        batch: Annotated[int, typer.Option(parser=whole(), help="Sequences per step.")] = 8,
        seq_len: Annotated[int, typer.Option(parser=whole(), help="Tokens per sequence.")] = 64,
        head_dim: Annotated[
            int | None,
            typer.Option(
                parser=whole(), help="Attention head dimension (heads grow with width); default 32, or --model's own."
            ),
        ] = None,
        lr: Annotated[
            float | None, typer.Option(parser=real(), help="Base learning rate eta (default: the rule's).")
        ] = None,
        hp: Annotated[list[str] | None, typer.Option(help="HP override NAME=VALUE, e.g. sigma=0.02 (repeat).")] = None,
        param: Annotated[list[str] | None, typer.Option(help="Rule-file param NAME=VALUE, e.g. alpha=1/2.")] = None,
        corpus: Annotated[
            str | None, typer.Option(help="Text file/folder (default: the fetched default corpus).")
        ] = None,
        threads: Annotated[
            int, typer.Option(parser=whole(), help="torch CPU threads; 1 is fastest for these tiny models.")
        ] = 1,
        out: Annotated[Path, typer.Option(help="Output folder (JSON, CSV, PNGs).")] = Path("coord_check"),
        model: Annotated[
            str | None,
            typer.Option(help="Your model: FILE.py:FUNC, FUNC(width, depth) -> nn.Module (byte ids -> logits)."),
        ] = None,
        roles: Annotated[
            Path | None, typer.Option(help="JSON {glob: role} binding --model's parameters (default: preset/infer).")
        ] = None,
        strict: Annotated[
            bool, typer.Option("--strict", help="Exit 1 when a sweep the rule's theory claims is not `pass`.")
        ] = False,
    ) -> None:
        """Train the bundled GPT (or --model) a few steps across widths and depths, fit log-log slopes, judge."""
        parse_hp_specs(hp)  # every number is checked before the rule compiles
        check_output_dir(out)  # an output folder that cannot be written is refused before any training
        subject = model_subject(model, roles)
        rules = load(rule, parse_params(param) or None)
        cfg = build_config(
            widths,
            depths,
            base_width,
            base_depth,
            steps,
            seeds,
            batch,
            seq_len,
            head_dim,
            hp_overrides(rules, lr, hp),
            model,
        )
        check_sizes(rules, cfg)

        data = coord.load_batches(corpus, cfg)
        start = time.perf_counter()
        with torch_threads(threads):
            result, plots = run_and_save(rules, cfg, data, out, rule, subject)
        if subject is not None:  # what the plan bound, folded and hooked, per model built
            subjects.record_binding(out / "coord_check.json", subject, rules, cfg, model)
        for sweep in result.sweeps:
            console.print(verdict_table([(rule, result)], sweep))
        console.print(f"{cfg.thresholds()}.", markup=False)
        console.print(
            f"wrote {out}/coord_check.json, coord_check.csv, "
            f"{', '.join(p.name for p in plots.values())} in {time.perf_counter() - start:.1f} s",
            markup=False,
        )
        if strict:
            failing = [f"{s}: {result.status(s)}" for s in claimed_sweeps(rules) if s in result.sweeps]
            failing = [f for f in failing if not f.endswith(": pass")]
            if failing:
                raise CoordCheckArgsError(
                    f"error: --strict: {rule} claims these sweeps, which did not pass: {'; '.join(failing)}"
                )
