"""The bundled Llama-style GPT: pre-norm RMSNorm, optional QK-norm, SwiGLU, RoPE, untied embeddings, no biases.

Forward multipliers (a plan's `multipliers`) are plain Python floats fixed at construction, so the default path
(all multipliers 1) adds no kernels and torch.compile sees constants. Module names are stable for forward hooks:
`embed`, `blocks.{i}.attn`, `blocks.{i}.mlp`, `final_norm`, `unembed`; every module's output already carries its
multipliers (`blocks.{i}.attn`/`.mlp` return the branch's contribution to the residual stream).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scalec.compiler.vocabulary import ROLES as VOCABULARY_ROLES

SITE_KEYS = ("residual.attn", "residual.mlp", "attn.scale", "output.mult", "embed.mult")
ROLES = tuple(r for r in VOCABULARY_ROLES if r != "bias")  # the roles this model has: it has no biases


@dataclass(frozen=True)
class GPTConfig:
    """Shape of the model. `n_heads` wins over `head_dim` when given; heads = width // head_dim otherwise.

    The SwiGLU hidden size is `round(mlp_ratio * width)`; the default ratio 3 keeps it exactly linear in width
    (width transfer needs fan ratios that do not drift) and a multiple of 8 whenever width is.
    """

    width: int
    depth: int
    head_dim: int = 32
    n_heads: int | None = None
    vocab: int = 256
    seq_len: int = 256
    qk_norm: bool = False
    mlp_ratio: float = 3.0
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.n_heads is not None:
            if self.width % self.n_heads:
                raise ValueError(f"width {self.width} is not divisible by n_heads {self.n_heads}")
            object.__setattr__(self, "head_dim", self.width // self.n_heads)
        if self.width % self.head_dim or self.head_dim % 2:
            raise ValueError(f"width {self.width} must be a multiple of an even head_dim ({self.head_dim})")
        object.__setattr__(self, "n_heads", self.width // self.head_dim)

    @property
    def mlp_hidden(self) -> int:
        """SwiGLU hidden width."""
        return round(self.mlp_ratio * self.width)

    def to_dict(self) -> dict:
        """Plain-data form (for config.json)."""
        return asdict(self)


def _mults(multipliers: Mapping[str, float] | None) -> dict[str, float]:
    """Validate the multipliers mapping: sites and `mult[<role>]` keys only, values as floats."""
    out = {}
    for key, value in (multipliers or {}).items():
        role = key[5:-1] if key.startswith("mult[") and key.endswith("]") else None
        if key not in SITE_KEYS and role not in ROLES:
            raise KeyError(f"unknown GPT multiplier {key!r}; expected one of {SITE_KEYS} or mult[<role>]")
        out[key] = float(value)
    return out


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain; `mult` scales the gain in the forward pass."""

    def __init__(self, dim: int, eps: float, mult: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps, self.mult = eps, mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under bf16 autocast q/k arrive in bf16: match the gain's dtype so the fused kernel applies.
        y = F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)
        return y * self.mult if self.mult != 1.0 else y


class Embed(nn.Module):
    """Token embedding (V, n); output scaled by mult[embed] * embed.mult."""

    def __init__(self, vocab: int, width: int, mult: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab, width))
        self.mult = mult

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = F.embedding(idx, self.weight)
        return x * self.mult if self.mult != 1.0 else x


class Unembed(nn.Module):
    """Readout (V, n); logits scaled by mult[unembed] * output.mult."""

    def __init__(self, vocab: int, width: int, mult: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab, width))
        self.mult = mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        return y * self.mult if self.mult != 1.0 else y


def rope_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (T, head_dim/2) for rotary embeddings. On the meta device (plans, coordinate checks) only
    their shape matters: `torch.arange` there would import torch._dynamo (about 1 s of CPU per process)."""
    if _building_on_meta():
        return torch.empty(seq_len, head_dim // 2), torch.empty(seq_len, head_dim // 2)
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def _building_on_meta() -> bool:
    """Whether new tensors land on the meta device (inside `with torch.device("meta")`)."""
    return torch.get_default_device().type == "meta"


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, d) by the half-split (GPT-NeoX) convention."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[: x.shape[-2]].to(x.dtype), sin[: x.shape[-2]].to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Attention(nn.Module):
    """Causal self-attention with RoPE and optional QK-norm; returns the residual-branch contribution."""

    def __init__(self, cfg: GPTConfig, m: Mapping[str, float]) -> None:
        super().__init__()
        n = cfg.width
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.q, self.k, self.v, self.o = (nn.Linear(n, n, bias=False) for _ in range(4))
        self.qk_norm = cfg.qk_norm
        mq, mk = m.get("mult[attn.q]", 1.0), m.get("mult[attn.k]", 1.0)
        scale = m.get("attn.scale", 1.0 / math.sqrt(cfg.head_dim))
        if cfg.qk_norm:
            # q/k multipliers act before the norm (scale-invariant but for eps); the gain multiplier after it
            # is bilinear in q.k, so it folds exactly into the SDPA scale.
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
            self.pre_q, self.pre_k = mq, mk
            scale *= m.get("mult[qk_norm]", 1.0) ** 2
        else:
            self.pre_q = self.pre_k = 1.0
            scale *= mq * mk  # q.k is bilinear: fold the q/k multipliers into the logit scale
        self.scale = scale
        # v and o are linear in the output: fold their multipliers into the residual-branch scalar.
        self.out_mult = m.get("residual.attn", 1.0) * m.get("mult[attn.v]", 1.0) * m.get("mult[attn.o]", 1.0)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, n = x.shape
        q = self.q(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q = self.q_norm(q * self.pre_q if self.pre_q != 1.0 else q)
            k = self.k_norm(k * self.pre_k if self.pre_k != 1.0 else k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        y = self.o(y.transpose(1, 2).reshape(b, t, n))
        return y * self.out_mult if self.out_mult != 1.0 else y


class MLP(nn.Module):
    """SwiGLU: down(silu(gate x) * up x); returns the residual-branch contribution."""

    def __init__(self, cfg: GPTConfig, m: Mapping[str, float]) -> None:
        super().__init__()
        n, h = cfg.width, cfg.mlp_hidden
        self.up, self.gate = nn.Linear(n, h, bias=False), nn.Linear(n, h, bias=False)
        self.down = nn.Linear(h, n, bias=False)
        self.gate_mult = m.get("mult[mlp.gate]", 1.0)  # inside the nonlinearity: cannot be folded
        self.out_mult = m.get("residual.mlp", 1.0) * m.get("mult[mlp.up]", 1.0) * m.get("mult[mlp.down]", 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x)
        g = g * self.gate_mult if self.gate_mult != 1.0 else g
        y = self.down(F.silu(g) * self.up(x))
        return y * self.out_mult if self.out_mult != 1.0 else y


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm x), then x + mlp(norm x)."""

    def __init__(self, cfg: GPTConfig, m: Mapping[str, float]) -> None:
        super().__init__()
        norm_mult = m.get("mult[norm]", 1.0)
        self.attn_norm = RMSNorm(cfg.width, cfg.norm_eps, norm_mult)
        self.attn = Attention(cfg, m)
        self.mlp_norm = RMSNorm(cfg.width, cfg.norm_eps, norm_mult)
        self.mlp = MLP(cfg, m)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """Decoder-only LM over bytes; `multipliers` is a plan's `multipliers` dict (missing keys = defaults)."""

    # The forward multipliers this model applies itself (make_plan leaves them to it): every site, and the
    # per-role multiplier of each of its roles.
    APPLIED_SITES: tuple[str, ...] = SITE_KEYS + tuple(f"mult[{r}]" for r in ROLES)

    def __init__(self, config: GPTConfig, multipliers: Mapping[str, float] | None = None) -> None:
        super().__init__()
        m = _mults(multipliers)
        self.config, self.multipliers = config, m
        self.embed = Embed(config.vocab, config.width, m.get("mult[embed]", 1.0) * m.get("embed.mult", 1.0))
        self.blocks = nn.ModuleList(Block(config, m) for _ in range(config.depth))
        self.final_norm = RMSNorm(config.width, config.norm_eps, m.get("mult[final_norm]", 1.0))
        self.unembed = Unembed(config.vocab, config.width, m.get("mult[unembed]", 1.0) * m.get("output.mult", 1.0))
        cos, sin = rope_tables(config.seq_len, config.head_dim, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Standard-parameterisation default init (a plan's `init_` replaces it): N(0, 0.02), unit gains."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif not p.is_meta:  # a meta tensor holds no values; its normal_ would import torch._dynamo
                p.normal_(0.0, 0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V), or the mean cross-entropy loss (fp32) when `targets` is given."""
        if idx.shape[1] > self.config.seq_len:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds config.seq_len {self.config.seq_len}")
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin)
        logits = self.unembed(self.final_norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; `non_embedding` leaves out the input lookup table (the readout is a real matmul)."""
        return sum(p.numel() for n, p in self.named_parameters() if not (non_embedding and n == "embed.weight"))

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N + 12*L*d*T (N without the embedding lookup; PaLM appendix B)."""
        c = self.config
        return 6.0 * self.num_params(non_embedding=True) + 12.0 * c.depth * c.width * c.seq_len
