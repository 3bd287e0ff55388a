"""`scalec coord-check RULE`: empirical width/depth coordinate check of one rule file on the bundled GPT."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import real, whole
from scalec.compiler.hp_domains import domain_violation
from scalec.errors import ScalecError
from scalec.parsing import parse_hp_specs, parse_hp_values, parse_ints, parse_params

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
    out.setdefault("eta", _default_eta())
    return out


def check_sizes(rules: Any, cfg: Any) -> None:
    """Every width (at the sweep's depth) and depth (at its width) inside the rule's region, before any model."""
    depth, width = cfg.depth_for_width_sweep, cfg.width_for_depth_sweep
    for n in cfg.widths:
        rules.shape(n=n, L=depth, d_head=cfg.head_dim)
    for L in cfg.depths:
        rules.shape(n=width, L=L, d_head=cfg.head_dim)


def _default_eta() -> float:
    from scalec.runtime.studies.coord_check import DEFAULT_ETA

    return DEFAULT_ETA


def build_config(
    widths: str,
    depths: str,
    base_width: int | None,
    base_depth: int | None,
    steps: int,
    seeds: int,
    batch: int,
    seq_len: int,
    head_dim: int,
    hp: dict[str, float],
) -> Any:
    """A CoordCheckConfig from CLI values."""
    from scalec.runtime.studies.coord_check import CoordCheckConfig

    return CoordCheckConfig(
        widths=parse_ints(widths, "--widths", at_least=2),
        depths=parse_ints(depths, "--depths", at_least=2),
        base_width=base_width,
        base_depth=base_depth,
        steps=steps,
        seeds=seeds,
        batch=batch,
        seq_len=seq_len,
        head_dim=head_dim,
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
    rules: Any, cfg: Any, data: tuple[Any, Any], out: Path, label: str | None = None
) -> tuple[Any, dict[str, Path]]:
    """Run a coordinate check on `data` (from `load_batches`), write coord_check.json / .csv and
    coord_<sweep>.png into `out`; return (CoordCheckResult, {sweep: png})."""
    from scalec.runtime.studies.coord_check import run_coord_check
    from scalec.runtime.studies.coord_plot import plot_all

    batches, probe = data
    with console.status(f"coord-check {label or rules.name}") as status:
        result = run_coord_check(
            rules,
            cfg,
            batches,
            probe,
            progress=lambda msg: status.update(f"coord-check {label or rules.name}: {msg}"),
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "coord_check.json").write_text(result.to_json())
    (out / "coord_check.csv").write_text(result.to_csv())
    return result, plot_all(result, out)


def verdict_table(results: list[tuple[str, Any]], sweep: str) -> Any:
    """A rich table: a row per module, a column per rule, cells 'status xR (slope)' of the update RMS."""
    from rich.table import Table

    from scalec.runtime.studies.coord_check import MODULES

    table = Table(
        title=f"coordinate check vs {sweep}: status, update-RMS ratio across the range (log-log slope)",
        title_justify="left",
    )
    table.add_column("module")
    for label, _ in results:
        table.add_column(label)
    for module in MODULES:
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
            int, typer.Option(parser=whole(), help="Attention head dimension (heads grow with width).")
        ] = 32,
        lr: Annotated[float | None, typer.Option(parser=real(), help="Base learning rate eta (default 2^-6).")] = None,
        hp: Annotated[list[str] | None, typer.Option(help="HP override NAME=VALUE, e.g. sigma=0.02 (repeat).")] = None,
        param: Annotated[list[str] | None, typer.Option(help="Rule-file param NAME=VALUE, e.g. alpha=1/2.")] = None,
        corpus: Annotated[
            str | None, typer.Option(help="Text file/folder (default: the fetched default corpus).")
        ] = None,
        threads: Annotated[
            int, typer.Option(parser=whole(), help="torch CPU threads; 1 is fastest for these tiny models.")
        ] = 1,
        out: Annotated[Path, typer.Option(help="Output folder (JSON, CSV, PNGs).")] = Path("coord_check"),
    ) -> None:
        """Train the bundled GPT a few steps across widths and depths, fit log-log slopes, judge modules."""
        import scalec

        parse_hp_specs(hp)  # every number is checked before the rule compiles
        rules = scalec.load(rule, parse_params(param) or None)
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
        )
        check_sizes(rules, cfg)
        from scalec.runtime.studies.coord_check import load_batches

        data = load_batches(corpus, cfg)
        start = time.perf_counter()
        with torch_threads(threads):
            result, plots = run_and_save(rules, cfg, data, out, rule)
        for sweep in result.sweeps:
            console.print(verdict_table([(rule, result)], sweep))
        console.print(f"{cfg.thresholds()}.", markup=False)
        console.print(
            f"wrote {out}/coord_check.json, coord_check.csv, "
            f"{', '.join(p.name for p in plots.values())} in {time.perf_counter() - start:.1f} s",
            markup=False,
        )
