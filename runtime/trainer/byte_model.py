"""Your byte-level model in the bundled loop (`TrainConfig.model`, `scalec train --model FILE.py:FUNC`).

`FUNC(width, depth)` builds an nn.Module mapping LongTensor byte ids [batch, seq] to logits [batch, seq, V >= 256]
(or an object with `.logits`), as coord-check takes it. It is bound, planned, initialised and hooked by
`studies.user_model.UserModel`; `ByteLM` gives it the bundled GPT's loop interface: forward(x, y) -> loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scalec.runtime.studies.user_model import (
    UserModel,
    UserModelError,
    binding_record,
    byte_logits,
    check_unchanged,
    one_line,
    resolve,
)
from scalec.runtime.trainer.train_config import TrainConfig


class ByteLM(nn.Module):
    """The user's model with the bundled GPT's interface: `forward(x, y)` -> mean cross-entropy (logits without
    `y`), `num_params`, `flops_per_token` (6N; the model's attention FLOPs are unknown)."""

    def __init__(self, model: nn.Module, label: str) -> None:
        super().__init__()
        self.model, self.label = model, label

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        logits = byte_logits(self.model(x), x, self.label)
        if y is None:
            return logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (shared tensors once; `non_embedding` is accepted for the GPT's signature)."""
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    def flops_per_token(self) -> float:
        """Training FLOPs per token, 6N (the forward's attention term is the model's own and not known here)."""
        return 6.0 * self.num_params()


def build_byte_model(cfg: TrainConfig, rules: Any, example: torch.Tensor, device: torch.device) -> tuple:
    """(ByteLM on `device`, plan, binding record) of `cfg.model` at the config's shape, initialised with its seed."""
    check_unchanged(cfg.model, cfg.model_sha256, "--model")
    build = resolve(cfg.model, "--model", "(width, depth)")
    user = UserModel(build, cfg.roles or None, label=cfg.model.removeprefix("python:"))
    axes = {"B": float(cfg.batch), "D": float(cfg.total_tokens())}
    generator = torch.Generator().manual_seed(cfg.seed)
    model, plan, hooks = user.bind(
        rules, cfg.width, cfg.depth, cfg.seed, dict(cfg.hp) or None, cfg.head_dim, axes, example, generator
    )
    lm = ByteLM(model, f"{user.label}({cfg.width}, {cfg.depth})")
    with torch.no_grad():
        try:
            lm(example[:1, :2])  # the forward's failures and a wrong output are one line before the run dir
        except UserModelError:
            raise
        except Exception as exc:  # the user's forward
            raise UserModelError(f"error: {lm.label} forward raised {one_line(exc)}") from None
    return (
        lm.to(device),
        plan,
        {**binding_record(plan, hooks.sites), "model": cfg.model, "model_sha256": cfg.model_sha256},
    )
