"""`scalec show`: every role x HP value of a rule at a shape, with its scaling exponents."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from scalec.cli_support import console, guarded
from scalec.compiler.domain import first_violation
from scalec.compiler.parameterisation import load
from scalec.errors import ScalecError
from scalec.parsing import parse_hp_specs, parse_hp_values, parse_int, parse_params


def register(app: typer.Typer) -> None:
    app.command("show")(show_cmd)


def _require_domains(role: str, per_block: list) -> None:
    """Refuse, as make_plan does, a value outside its HP domain (compiler/domain.py): hp values given outside
    the file's declared ranges can leave the region `scalec check` proved."""
    for block, values in enumerate(per_block):
        bad = first_violation(values)
        if bad is not None:
            kind, value, why = bad
            where = f" on block {block}" if len(per_block) > 1 else ""
            raise ScalecError(
                f"error: role '{role}' gets {kind} = {value:.6g}{where} at this shape, {why}; check the hp values "
                "(keep them in the file's declared ranges) and the shape"
            )


@guarded
def show_cmd(
    file: Annotated[str, typer.Argument(help="Rule file or bundled name.")],
    width: Annotated[str | None, typer.Option("--width", "-n", help="d_model, e.g. 1024 or 2^10")] = None,
    depth: Annotated[str | None, typer.Option("--depth", "-L", help="residual blocks")] = None,
    batch: Annotated[str | None, typer.Option("--batch", "-B", help="tokens per step, e.g. 2^14")] = None,
    duration: Annotated[str | None, typer.Option("--duration", "-D", help="training tokens, e.g. 16M")] = None,
    head_dim: Annotated[str | None, typer.Option("--head-dim", help="attention head dim")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Override a param, e.g. alpha=1/2.")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="Override an HP, e.g. eta=2^-7.")] = None,
) -> None:
    """Every role x HP value at a shape, with its scaling exponents."""
    options = {"n": ("--width", width), "L": ("--depth", depth), "B": ("--batch", batch)}
    options |= {"D": ("--duration", duration), "d_head": ("--head-dim", head_dim)}
    axes = {axis: parse_int(text, flag) for axis, (flag, text) in options.items() if text is not None}
    hp_specs, params = parse_hp_specs(hp), parse_params(param)
    p = load(file, params)
    shape = p.shape(**axes)
    hparams = p.hparams(**parse_hp_values(hp_specs, p, "show"))
    try:
        p.module.check_shape(shape, hparams)  # the region at these HPs (p.shape checked it at the defaults)
    except ValueError as exc:
        raise ScalecError(f"error: {exc}") from None
    exponent = p.summary.exponent  # (subject, hp) -> symbolic exponent per axis, as exponent_table gives them
    t = Table("role", "HP", "value", "m_N", "m_L", "m_B", "m_D")
    layered = getattr(p.module, "LAYERED_ROLES", frozenset())
    for role in p.module.ROLES:
        # rules in the block index l (a depth profile, (1 + l) / L): the first and the last block's values
        every = range(max(1, round(shape.L))) if role in layered else (None,)
        all_blocks = [p.role_hparams(role, shape, hparams, layer=b) for b in every]  # refused in one line
        _require_domains(role, all_blocks)  # every block, not only the two shown (as make_plan would refuse)
        per_block = [all_blocks[0], all_blocks[-1]] if role in layered else all_blocks
        values = per_block[0]
        for kind in ("init_std", "lr", "weight_decay", "eps", "beta1", "beta2", "momentum", "mult"):
            if getattr(values, kind, None) is None:
                continue  # a target this role's optimizer does not have
            label = f"1-{kind}" if kind.startswith("beta") or kind == "momentum" else kind
            row = exponent(role, label)
            shown = dict.fromkeys(f"{getattr(v, kind):.6g}" for v in per_block)
            text = " .. ".join(shown) + (" (blocks 0 .. L-1)" if len(shown) > 1 else "")
            # weight decay in the rule's own convention: name it when it is not torch's (plan's wd (torch) = / lr)
            decay = getattr(values, "decay", "coupled")
            name = f"{kind} ({decay})" if kind == "weight_decay" and decay != "coupled" else kind
            t.add_row(role, name, text, *(row[a] for a in ("n", "L", "B", "D")))
        t.add_section()
    sites = p.sites(shape, hparams).as_dict()
    for site, value in sites.items():
        row = exponent(site, "site")
        t.add_row(site, "site", f"{value:.6g}", *(row[a] for a in ("n", "L", "B", "D")))
    console.print(
        f"[bold]{p.name}[/bold] at n={shape.n:g} L={shape.L:g} B={shape.B:g} D={shape.D:g} "
        f"d_head={shape.d_head:g}  (base n={p.module.BASE.n:g} L={p.module.BASE.L:g} "
        f"B={p.module.BASE.B:g} D={p.module.BASE.D:g}); steps={p.module.steps(shape)}"
    )
    console.print(t)
    for line in p.summary.declared_lines:
        console.print(line, markup=False)
    for line in p.summary.region:
        console.print(f"feasible region: {line}", markup=False)
