"""The optimizers a role can use (`role hidden: optimizer = muon`): targets, defaults, torch class, theory
and abc-symmetry, in one table.  Everything else (resolver, checks, analysis, codegen, runtime) reads it from here.

Weight decay has two conventions a file chooses per role (`decay = coupled | independent`):
  coupled      per-step shrink lr_t * weight_decay (torch AdamW/Muon; today's meaning, lr_t includes the schedule);
  independent  per-step shrink weight_decay * f_t, f_t the schedule factor (Loshchilov & Hutter 2019).
The runtime translates both into each torch optimizer's own convention (see runtime/plan/optimizer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

# Targets every role has, whatever its optimizer.
COMMON_TARGETS: tuple[str, ...] = ("init_mean", "init_std", "mult")
# Word-valued settings every role has, with their allowed words (the first is the default).
COMMON_SETTINGS: dict[str, tuple[str, ...]] = {"decay": ("coupled", "independent")}
DECAY_CONVENTIONS: tuple[str, ...] = COMMON_SETTINGS["decay"]

# Targets whose rules may be written on 1 - value and whose exponents are read off 1 - value.
ONE_MINUS_TARGETS: frozenset[str] = frozenset({"beta1", "beta2", "momentum"})


@dataclass(frozen=True)
class Optimizer:
    """One optimizer of the language.

    `targets`: numeric per-role hyperparameters it takes; `settings`: word-valued ones ({name: allowed words},
    the first word the default); `defaults`: values a role gets when it switches to this optimizer (targets in
    `carry` keep their rules instead); `symmetry`: exponent shifts of (mult, init_std, lr, eps, weight_decay) under
    theta -> c*theta, mult -> mult/c that leave training unchanged (coupled decay; independent decay does not
    shift), None when there is none; `theory`: which width desiderata judge it."""

    name: str
    torch_class: str
    targets: tuple[str, ...]
    settings: dict[str, tuple[str, ...]]
    defaults: dict[str, object]
    carry: tuple[str, ...]
    symmetry: dict[str, Fraction] | None
    theory: str
    cite: str
    matrices_only: bool = False
    torch_names: dict[str, str] = field(default_factory=dict)  # plan key -> torch param-group key

    def all_targets(self) -> tuple[str, ...]:
        return COMMON_TARGETS + self.targets

    def all_settings(self) -> dict[str, tuple[str, ...]]:
        return {**COMMON_SETTINGS, **self.settings}


_ADAM_SHIFT = {"mult": Fraction(-1), "init_std": Fraction(1), "lr": Fraction(1), "eps": Fraction(-1)}
OPTIMIZERS: dict[str, Optimizer] = {
    "adamw": Optimizer(
        name="adamw",
        torch_class="AdamW",
        targets=("lr", "weight_decay", "beta1", "beta2", "eps"),
        settings={},
        defaults={"beta1": Fraction(9, 10), "beta2": Fraction(999, 1000), "eps": Fraction(1, 10**8)},
        carry=("lr", "weight_decay"),
        # Adam is invariant to the gradient's scale: theta' = c theta needs lr' = c lr, eps' = eps/c, wd' = wd/c.
        symmetry={**_ADAM_SHIFT, "weight_decay": Fraction(-1)},
        theory="adam",
        cite="Loshchilov & Hutter 2019 (AdamW); Yang et al. 2022, Tensor Programs V, arXiv 2203.03466",
    ),
    "sgd": Optimizer(
        name="sgd",
        torch_class="SGD",
        targets=("lr", "momentum", "weight_decay"),
        settings={"nesterov": ("false", "true")},
        defaults={"momentum": Fraction(0)},
        carry=("lr", "weight_decay"),
        # SGD's update is linear in the gradient (which scales 1/c): theta' = c theta needs lr' = c^2 lr.
        symmetry={"mult": Fraction(-1), "init_std": Fraction(1), "lr": Fraction(2), "weight_decay": Fraction(-2)},
        theory="sgd",
        cite="Yang et al. 2022, Tensor Programs V, arXiv 2203.03466, Table 3 (SGD column)",
    ),
    "muon": Optimizer(
        name="muon",
        torch_class="Muon",
        targets=("lr", "momentum", "weight_decay", "eps", "ns_steps"),
        settings={"nesterov": ("true", "false"), "adjust_lr": ("original", "match_rms_adamw")},
        defaults={"momentum": Fraction(95, 100), "eps": Fraction(1, 10**7), "ns_steps": 5},
        carry=("lr", "weight_decay"),
        # Newton-Schulz orthogonalises the momentum, so the update is lr * O whatever the gradient's scale: like
        # Adam, theta' = c theta needs lr' = c lr; eps (a clamp on the momentum's norm) eps' = eps/c.
        symmetry={**_ADAM_SHIFT, "weight_decay": Fraction(-1)},
        theory="spectral",
        cite="Jordan et al. 2024 (Muon); Yang, Simon & Bernstein 2023, arXiv 2310.17813 (spectral condition)",
        matrices_only=True,
        torch_names={"adjust_lr": "adjust_lr_fn"},
    ),
}
DEFAULT_OPTIMIZER = "adamw"

# Every target and setting any optimizer has (the resolver's vocabulary of assignable names).
ALL_TARGETS: tuple[str, ...] = tuple(dict.fromkeys(t for o in OPTIMIZERS.values() for t in o.all_targets()))
ALL_SETTINGS: tuple[str, ...] = ("optimizer",) + tuple(
    dict.fromkeys(s for o in OPTIMIZERS.values() for s in o.all_settings())
)

# torch.optim.Muon's adjust_lr_fn: lr_eff = lr * factor(A, B) for a weight of shape (A, B) = (fan_out, fan_in).
# As a width exponent for a matrix whose both fans grow like width: "original" sqrt(max(1, A/B)) is width-free,
# "match_rms_adamw" 0.2 sqrt(max(A, B)) grows as width^1/2.
ADJUST_LR_WIDTH_EXPONENT: dict[str, Fraction] = {"original": Fraction(0), "match_rms_adamw": Fraction(1, 2)}


def optimizer_of(name: str) -> Optimizer:
    """The Optimizer called `name` (KeyError when unknown)."""
    return OPTIMIZERS[name]


def decay_shift(optimizer: Optimizer, decay: str) -> Fraction | None:
    """The symmetry's exponent shift of weight_decay: none for independent decay (a shrink per step does not
    depend on the parameter's scale)."""
    if optimizer.symmetry is None:
        return None
    return Fraction(0) if decay == "independent" else optimizer.symmetry["weight_decay"]
