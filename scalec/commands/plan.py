"""`scalec plan`: the per-parameter plan (init, AdamW settings, multipliers) of a rule on a model shape (the
bundled GPT, an HF model, or your model FILE.py:FUNC with its binding)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import Roles, whole
from scalec.compiler.parameterisation import load
from scalec.errors import ScalecError
from scalec.lazy_module import lazy_module
from scalec.parsing import parse_base, parse_hp_specs, parse_hp_values, parse_int, parse_params
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.studies.user_model import UserModel, binding_record, file_sha256, load_function, load_roles

# Modules that import torch load when the command runs, not for `--help` (which needs only the options).
gpt = lazy_module("scalec.runtime.trainer.gpt")

MODELS = ("gpt", "hf-gpt2", "hf-llama")


class PlanCommandError(ScalecError):
    """Bad `scalec plan` arguments."""


def build_model(
    kind: str,
    width: int,
    depth: int,
    head_dim: int,
    vocab: int,
    qk_norm: bool,
    intermediate: int | None = None,
    kv_heads: int | None = None,
) -> Any:
    """The model to plan, on the meta device (no memory): the bundled GPT or an HF model from a config
    (hf-llama: `intermediate` MLP width, default 3 x width; `kv_heads` grouped-query heads, default all)."""
    import torch

    if width % head_dim:
        raise PlanCommandError(f"error: --width {width} is not a multiple of the head dimension {head_dim}")
    heads = width // head_dim
    if (intermediate is not None or kv_heads is not None) and kind != "hf-llama":
        raise PlanCommandError("error: --intermediate and --kv-heads describe an hf-llama model; add --model hf-llama")
    if kv_heads is not None and heads % kv_heads:
        raise PlanCommandError(f"error: --kv-heads {kv_heads} does not divide the {heads} attention heads")
    with torch.device("meta"):
        if kind == "gpt":
            try:
                return gpt.GPT(
                    gpt.GPTConfig(width=width, depth=depth, head_dim=head_dim, vocab=vocab, seq_len=16, qk_norm=qk_norm)
                )
            except ValueError as exc:
                raise PlanCommandError(f"error: --model gpt: {exc}") from None
        try:  # a broken install fails lazily, on the first class access, with various errors
            if kind == "hf-gpt2":
                from transformers import GPT2Config as Config
                from transformers import GPT2LMHeadModel as Model
            else:
                from transformers import LlamaConfig as Config
                from transformers import LlamaForCausalLM as Model
        except (ImportError, RuntimeError):
            raise PlanCommandError(f"error: --model {kind} needs transformers; pip install 'scalec[hf]'") from None
        common = {"vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 0}
        if kind == "hf-gpt2":
            return Model(Config(n_embd=width, n_layer=depth, n_head=heads, n_positions=16, **common))
        return Model(
            Config(
                hidden_size=width,
                intermediate_size=intermediate or 3 * width,
                num_hidden_layers=depth,
                num_attention_heads=heads,
                num_key_value_heads=kv_heads or heads,
                max_position_embeddings=16,
                **common,
            )
        )


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def register(app: typer.Typer) -> None:
    """Add `scalec plan` to the CLI."""

    @app.command("plan")
    @guarded
    def plan(
        rule: Annotated[str, typer.Argument(help="Bundled rule (sp, mup, completep, completedp, ...) or .scale path.")],
        width: Annotated[int, typer.Option("--width", parser=whole(), help="Model width n (d_model).")],
        depth: Annotated[int, typer.Option("--depth", parser=whole(), help="Residual blocks L.")],
        model: Annotated[
            str,
            typer.Option("--model", help="gpt (bundled), hf-gpt2, hf-llama, or your model FILE.py:FUNC(width, depth)."),
        ] = "gpt",
        roles: Roles = None,
        batch: Annotated[str | None, typer.Option("--batch", help="Tokens per step B (default: base).")] = None,
        duration: Annotated[str | None, typer.Option("--duration", help="Training tokens D (default: base).")] = None,
        heads: Annotated[
            int | None, typer.Option("--heads", parser=whole(), help="Attention heads (d_head = width/heads).")
        ] = None,
        head_dim: Annotated[
            int | None, typer.Option("--head-dim", parser=whole(), help="Head dimension (default 32).")
        ] = None,
        base: Annotated[list[str] | None, typer.Option("--base", help="Base-shape overrides, e.g. n=256,L=4.")] = None,
        hp: Annotated[
            list[str] | None, typer.Option("--hp", help="HP overrides: eta=0.01, 'lr\\[mlp.down]=2'.")
        ] = None,
        param: Annotated[list[str] | None, typer.Option("--param", help="Rule-file params, e.g. alpha=1/2.")] = None,
        vocab: Annotated[
            int, typer.Option("--vocab", parser=whole(2), help="Vocabulary size of the planned model.")
        ] = 256,
        qk_norm: Annotated[bool, typer.Option("--qk-norm", help="Bundled GPT with QK-norm.")] = False,
        intermediate: Annotated[
            int | None, typer.Option("--intermediate", parser=whole(), help="hf-llama MLP width (default 3 x width).")
        ] = None,
        kv_heads: Annotated[
            int | None, typer.Option("--kv-heads", parser=whole(), help="hf-llama grouped-query KV heads.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON (keys: parameters, multipliers).")] = False,
        applied: Annotated[
            str | None,
            typer.Option("--applied", help="Sites the model applies itself: 'all' or e.g. output.mult,residual.attn."),
        ] = None,
        fold: Annotated[
            bool | None,
            typer.Option("--fold/--no-fold", help="Fold what the model does not apply (default: on for hf-*)."),
        ] = None,
    ) -> None:
        """Print the per-parameter plan of RULE for a model of the given shape."""
        if model not in MODELS and ":" not in model:
            raise PlanCommandError(
                f"error: --model '{model}' is unknown; use one of {', '.join(MODELS)} or FILE.py:FUNC (your model)"
            )
        if roles is not None and model in MODELS:
            raise PlanCommandError("error: --roles binds the parameters of --model FILE.py:FUNC; pass --model too")
        if heads is not None and head_dim is not None:
            raise PlanCommandError("error: give --heads or --head-dim, not both")
        if heads is not None:
            if width % heads:
                raise PlanCommandError(f"error: --width {width} is not divisible by --heads {heads}")
            head_dim = width // heads
        if model not in MODELS:
            given = {"--applied": applied, "--fold/--no-fold": fold, "--intermediate": intermediate}
            given.update({"--kv-heads": kv_heads, "--qk-norm": qk_norm or None, "--vocab": None if vocab == 256 else 1})
            ignored = [name for name, value in given.items() if value is not None]
            if ignored:
                raise PlanCommandError(
                    f"error: {', '.join(ignored)} describe the bundled or HF models; your model's plan leaves the "
                    "multipliers hooks apply to hooks and folds the rest (as the studies train it)"
                )
            _plan_user_model(rule, model, roles, width, depth, head_dim, batch, duration, base, hp, param, as_json)
            return
        head_dim = head_dim or 32
        if width % head_dim:
            raise PlanCommandError(f"error: --width {width} is not a multiple of the head dimension {head_dim}")
        axes: dict[str, float] = {"n": width, "L": depth, "d_head": head_dim}
        if batch is not None:
            axes["B"] = parse_int(batch, "--batch")
        if duration is not None:
            axes["D"] = parse_int(duration, "--duration")
        hp_specs, params, bases = parse_hp_specs(hp), parse_params(param), parse_base(base)
        rules = load(rule, params=params or None, base=bases or None)
        hps = parse_hp_values(hp_specs, rules, "plan") or None
        shape = rules.shape(**axes)  # the box and the feasible region, before the model is built
        net = build_model(model, width, depth, head_dim, vocab, qk_norm, intermediate, kv_heads)
        sites = None if applied is None else ("all" if applied == "all" else [a.strip() for a in applied.split(",")])
        result = make_plan(
            rules, net, shape, hp=hps, applied_sites=sites, fold=(model != "gpt") if fold is None else fold
        )
        if as_json:
            typer.echo(result.to_json())
            return
        _print_table(result)


def _plan_user_model(
    rule: str,
    model: str,
    roles: Any,
    width: int,
    depth: int,
    head_dim: int | None,
    batch: str | None,
    duration: str | None,
    base: list[str] | None,
    hp: list[str] | None,
    param: list[str] | None,
    as_json: bool,
) -> None:
    """`scalec plan RULE --model FILE.py:FUNC`: the plan of your model (built on the meta device) as the studies
    make it, the multipliers hooks apply left to them, the rest folded; plus the binding (roles, folds, hooks)."""
    hp_specs, params, bases = parse_hp_specs(hp), parse_params(param), parse_base(base)
    user = UserModel(load_function(model), load_roles(roles) if roles is not None else None, label=model)
    rules = load(rule, params=params or None, base=bases or None)
    hps = parse_hp_values(hp_specs, rules, "plan") or None
    axes = {k: float(parse_int(v, f"--{n}")) for k, n, v in (("B", "batch", batch), ("D", "duration", duration)) if v}
    _, result = user.plan(rules, width, depth, hps, head_dim, axes)
    binding = {**binding_record(result), "model": model, "model_sha256": _sha(model)}
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "binding": binding}, indent=2))
        return
    _print_table(result)
    for site, hook in binding["hooks"].items():
        console.print(f"hook {site}: x {hook['factor']:.6g} (applied by a forward hook)", markup=False)


def _sha(spec: str) -> str:
    return file_sha256(spec.rpartition(":")[0])


def _print_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    axes = ", ".join(f"{k}={v:g}" for k, v in result.axes.items())
    table = Table(title=f"{result.rule} plan at {axes}", title_justify="left", box=None, pad_edge=False)
    table.add_column("parameter", no_wrap=True)
    # wd (torch): what torch's optimizer receives (a per-step shrink lr_t * wd); wd (rule): the rule's own value
    # where its convention differs (independent decay: the shrink per step, wd (torch) x lr).
    independent = any(e.decay != "coupled" for e in result.entries)
    cols = ("shape", "role", "optimizer", "init", "lr", "wd (torch)", *(("wd (rule)",) if independent else ()))
    for col in (*cols, "betas/momentum", "eps", "mult"):
        table.add_column(col, justify="left" if col in ("shape", "role") else "right", no_wrap=True)
    for e in result.entries:
        name = e.name + (f" (= {', '.join(e.tied_with)})" if e.tied_with else "")
        init = f"={_fmt(e.init_mean)}" if e.init_std == 0 else f"N({_fmt(e.init_mean)},{_fmt(e.init_std)})"
        if e.betas is not None:
            betas = f"{e.betas[0]:.6g}/{e.betas[1]:.6g}"
        else:  # sgd / muon: momentum (n: nesterov)
            betas = f"{e.momentum:.6g}" + ("n" if e.nesterov else "")
        table.add_row(
            name,
            "x".join(map(str, e.shape)),
            e.role,
            e.optimizer + (f" ({e.decay} wd)" if e.decay != "coupled" else ""),
            init,
            _fmt(e.lr),
            _fmt(e.weight_decay),
            *((_fmt(e.weight_decay_rule) if e.weight_decay_rule is not None else "-",) if independent else ()),
            betas,
            _fmt(e.eps) if e.eps is not None else "-",
            _fmt(e.mult),
        )
    # Never hide a column on a narrow (or piped, 80-column) console: widen to the table's natural width.
    width = max(console.width, Console(width=10_000).measure(table).maximum)
    Console(width=width, highlight=False, soft_wrap=False).print(table)
    mults = Table(title="forward multipliers", title_justify="left", box=None, pad_edge=False)
    mults.add_column("site")
    mults.add_column("value", justify="right")
    for key, value in result.multipliers.items():
        mults.add_row(key, _fmt(value))
    console.print(mults)
    for line in result.folded:
        console.print(f"folded {line}", highlight=False)
