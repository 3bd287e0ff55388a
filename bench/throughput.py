"""Training throughput of the bundled trainer: tokens/s, MFU, and the ratio to a plain-PyTorch reference loop.

Our step is the trainer's own hot loop (`Prefetcher` batches, `lr_factor` + `scale_lrs`, `train_step`, the
device-side `StepStats`) with the rule's plan and the trainer's optimizer; the reference is the same Llama-style model
written plainly below with one fused AdamW group, in a loop as careful as nanoGPT's: pinned non-blocking copies on
CUDA, no host read of the loss between log steps (no per-step host sync in either arm). Both read the loss once per
round (a log step). The two alternate in rounds inside one process, so machine load hits both alike; we report the
median of the per-round paired ratios and its quartiles.

    python bench/throughput.py                  # CPU: small shapes, < 2 minutes
    python bench/throughput.py --device cuda    # GPT-2-small shape (d=768, L=12, T=1024) + a shape sweep
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import scalec
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.plan.schedule import scale_lrs
from scalec.runtime.trainer.data import ByteData, resolve_corpus
from scalec.runtime.trainer.gpt import GPT, GPTConfig
from scalec.runtime.trainer.lr_schedule import lr_factor
from scalec.runtime.trainer.metrics import peak_flops
from scalec.runtime.trainer.prefetch import Prefetcher
from scalec.runtime.trainer.step import StepStats, train_step
from scalec.runtime.trainer.train import build_optimizer


class RefBlock(nn.Module):
    """Plain pre-norm Llama block with the same ops as ours (separate q/k/v/o, SwiGLU). The residual branches are
    scaled by plain floats, as the CompleteP reference code (nanoGPT-mup) writes its depth multiplier."""

    def __init__(self, d: int, heads: int, hidden: int, res_attn: float = 1.0, res_mlp: float = 1.0) -> None:
        super().__init__()
        self.heads, self.res_attn, self.res_mlp = heads, res_attn, res_mlp
        self.n1, self.n2 = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.w1, self.w3 = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.n1(x)

        def heads_rope(z: torch.Tensor, rope: bool) -> torch.Tensor:
            z = z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
            if not rope:
                return z
            z1, z2 = z.chunk(2, dim=-1)
            c, s = cos[:t].to(z.dtype), sin[:t].to(z.dtype)
            return torch.cat((z1 * c - z2 * s, z2 * c + z1 * s), dim=-1)

        q, k, v = heads_rope(self.wq(h), True), heads_rope(self.wk(h), True), heads_rope(self.wv(h), False)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = self.wo(y.transpose(1, 2).reshape(b, t, d))
        x = x + (a * self.res_attn if self.res_attn != 1.0 else a)
        h = self.n2(x)
        m = self.w2(F.silu(self.w1(h)) * self.w3(h))
        return x + (m * self.res_mlp if self.res_mlp != 1.0 else m)


# The forward multipliers the reference applies (the plan's; any other must be 1): the residual-branch, embedding
# and readout scalars, and the attention scale, which the reference leaves at SDPA's default 1/sqrt(head_dim).
REF_SITES = ("residual.attn", "residual.mlp", "embed.mult", "output.mult", "attn.scale")


class RefGPT(nn.Module):
    """The reference model: same shapes, FLOPs and forward multipliers as the bundled GPT under the plan."""

    def __init__(self, cfg: GPTConfig, multipliers: dict[str, float] | None = None) -> None:
        super().__init__()
        m = dict(multipliers or {})
        if not math.isclose(m.get("attn.scale", cfg.head_dim**-0.5), cfg.head_dim**-0.5):
            raise ValueError("the reference keeps SDPA's default attention scale 1/sqrt(head_dim)")
        other = {k: v for k, v in m.items() if k not in REF_SITES and v != 1.0}
        if other:
            raise ValueError(f"the reference applies only {REF_SITES}; this plan also has {other}")
        res = (m.get("residual.attn", 1.0), m.get("residual.mlp", 1.0))
        self.embed_mult, self.output_mult = m.get("embed.mult", 1.0), m.get("output.mult", 1.0)
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.blocks = nn.ModuleList(RefBlock(cfg.width, cfg.n_heads, cfg.mlp_hidden, *res) for _ in range(cfg.depth))
        self.norm = nn.RMSNorm(cfg.width, eps=1e-6)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)
        inv = 1.0 / 10000 ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
        ang = torch.outer(torch.arange(cfg.seq_len).float(), inv)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        x = x * self.embed_mult if self.embed_mult != 1.0 else x
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        logits = self.head(self.norm(x))
        logits = logits * self.output_mult if self.output_mult != 1.0 else logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    rule: str,
    width: int,
    depth: int,
    seq_len: int,
    seqs: int,
    device: torch.device,
    rounds: int,
    steps_per_round: int,
    compile_: bool,
    corpus: str | None,
) -> dict[str, float]:
    """Paired per-round ratio of ours to the reference (median and quartiles), alternating rounds; tok/s, MFU."""
    rules = scalec.load(rule)
    data = ByteData(resolve_corpus(corpus), seq_len=seq_len)
    gcfg = GPTConfig(width=width, depth=depth, seq_len=seq_len)
    batch_tokens = seqs * seq_len
    # Throughput does not depend on HP values: B and D take the rule's base values (a CPU batch of 512 tokens is
    # outside Complete(d)P's declared batch range).
    shape = {"n": width, "L": depth, "d_head": gcfg.head_dim}
    total = rounds * steps_per_round + 2  # steps the lr schedule spans (2 warm-up steps per arm)
    with torch.device("meta"):
        plan = make_plan(rules, GPT(gcfg), shape)
    torch.manual_seed(0)
    ours = plan.init_(GPT(gcfg, plan.multipliers).to(device))
    ref = RefGPT(gcfg, plan.multipliers).to(device)  # the same model: the plan's residual multipliers too
    assert ours.num_params(non_embedding=False) == sum(p.numel() for p in ref.parameters())
    opt_ours = build_optimizer(plan, ours, device)  # the trainer's own: fused AdamW on CUDA and CPU
    # The reference as nanoGPT builds it: torch's fused AdamW kernel (CUDA and, in torch >= 2.4, CPU).
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
    fwd_ours = torch.compile(ours) if compile_ else ours
    fwd_ref = torch.compile(ref) if compile_ else ref
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    )
    params = list(ours.parameters())
    train_arr = torch.from_numpy(data.splits["train"][: 1 << 22].astype("int64"))
    gen = torch.Generator().manual_seed(0)
    pin = device.type == "cuda"
    batches = Prefetcher(data, seqs, 0, device, 0, total)
    stats = StepStats(device)
    state = {"ours": 0, "ref_loss": None}

    def step_ours() -> None:
        s = state["ours"]
        scale_lrs(opt_ours, lr_factor(s, total))
        x, y = batches.get(s)
        stats.update(*train_step(fwd_ours, opt_ours, params, x, y, seqs, autocast, 1.0))
        state["ours"] = s + 1

    def step_ref() -> None:
        starts = torch.randint(0, len(train_arr) - seq_len - 1, (seqs,), generator=gen)
        chunk = train_arr[starts[:, None] + torch.arange(seq_len + 1)]
        chunk = chunk.pin_memory() if pin else chunk
        x, y = chunk[:, :-1].to(device, non_blocking=pin), chunk[:, 1:].to(device, non_blocking=pin)
        with autocast():
            loss = fwd_ref(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0, foreach=True)
        opt_ref.step()
        opt_ref.zero_grad(set_to_none=True)
        state["ref_loss"] = loss.detach()

    def log_ours() -> float:
        return stats.read().loss

    def log_ref() -> float:
        return state["ref_loss"].item()

    for fn in (step_ours, step_ref, step_ours, step_ref):  # warm-up (and compilation)
        fn()
    arms = {"ours": (step_ours, log_ours), "ref": (step_ref, log_ref)}
    times: dict[str, list[float]] = {"ours": [], "ref": []}
    for r in range(rounds):
        for name in ("ours", "ref") if r % 2 == 0 else ("ref", "ours"):
            fn, log = arms[name]
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps_per_round):
                fn()
            log()  # one log step per round: the only host read
            _sync(device)
            times[name].append((time.perf_counter() - t0) / steps_per_round)
    batches.close()
    t_ours, t_ref = statistics.median(times["ours"]), statistics.median(times["ref"])
    # Paired ratios: each round's two arms ran back to back, so drift in machine load cancels within a pair.
    paired = sorted(r / o for o, r in zip(times["ours"], times["ref"], strict=True))
    q1, q3 = paired[len(paired) // 4], paired[(3 * len(paired)) // 4]
    tok_s = batch_tokens / t_ours
    peak = peak_flops(device)
    return {
        "tok_s": tok_s,
        "ref_tok_s": batch_tokens / t_ref,
        "ratio": statistics.median(paired),
        "ratio_iqr": (q1, q3),
        "mfu": ours.flops_per_token() * tok_s / peak if peak else math.nan,
        "params_M": ours.num_params() / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rule", default="completedp")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models (CUDA)")
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--quick", action="store_true", help="main shape only")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 resists load from other processes)")
    args = ap.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        main_shape, seqs, rounds, spr = (768, 12, 1024), 16, 7, 5
        sweep = [(d, L, 1024) for d in (128, 256, 512, 1024) for L in (2, 4, 8)]
    else:
        torch.set_num_threads(args.threads)
        main_shape, seqs, rounds, spr = (128, 4, 64), 8, 16, 4
        sweep = [(128, 2, 64), (256, 2, 64), (256, 8, 32), (512, 2, 32)]
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, rule {args.rule}, "
        f"compile {args.compile}"
    )
    print(
        f"{'width':>6} {'depth':>5} {'T':>5} {'seqs':>4} {'params(M)':>9} {'ours tok/s':>11} "
        f"{'ref tok/s':>11} {'ours/ref':>8} {'IQR':>13} {'MFU':>6}"
    )
    t_start = time.perf_counter()
    shapes = [main_shape] + ([] if args.quick else [s for s in sweep if s != main_shape])
    for d, L, T in shapes:
        r = measure(args.rule, d, L, T, seqs, device, rounds, spr, args.compile, args.corpus)
        mfu = f"{100 * r['mfu']:.1f}%" if math.isfinite(r["mfu"]) else "n/a"
        print(
            f"{d:>6} {L:>5} {T:>5} {seqs:>4} {r['params_M']:>9.2f} {r['tok_s']:>11,.0f} {r['ref_tok_s']:>11,.0f} "
            f"{r['ratio']:>8.3f} {r['ratio_iqr'][0]:>6.3f}-{r['ratio_iqr'][1]:.3f} {mfu:>6}",
            flush=True,
        )
    print(
        f"total {time.perf_counter() - t_start:.0f}s; ours/ref >= 0.98 is the target (median of per-round paired "
        "ratios, interleaved ABBA; IQR = its quartiles; MFU = (6N + 12 L d T) tok/s / peak bf16)"
    )


if __name__ == "__main__":
    main()
