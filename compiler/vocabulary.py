"""The vocabulary of the rule language as plain data: axes, roles and their kinds, hyperparameter kinds, forward
sites, which role each site folds into and which sites forward hooks apply.

Plain data only (no sympy, no torch): the compiler, the runtime planner and the multiplier hooks all read these
facts from here.
"""

from __future__ import annotations

from fractions import Fraction

# Scaling axes: name -> ratio symbol used in rule files (m_N = n / n0, ...).
AXES: dict[str, str] = {"n": "m_N", "L": "m_L", "B": "m_B", "D": "m_D", "d_head": "m_H"}
AXIS_DOCS: dict[str, str] = {
    "n": "width (d_model)",
    "L": "depth (residual blocks)",
    "B": "batch (tokens per optimizer step)",
    "D": "duration (training tokens)",
    "d_head": "attention head dimension",
}
# The axes of the design's exponent tables; d_head only enters attention-scale rules.
MAIN_AXES: tuple[str, ...] = ("n", "L", "B", "D")

# Roles (module types) and their width class (Tensor Programs): which dims grow with width.  The classes are the
# design's role kinds: input = embedding (fixed -> width), hidden (width -> width), output = readout (width ->
# fixed), vector (gains, biases).
ROLES: dict[str, str] = {
    "embed": "input",
    "attn.q": "hidden",
    "attn.k": "hidden",
    "attn.v": "hidden",
    "attn.o": "hidden",
    "mlp.up": "hidden",
    "mlp.gate": "hidden",
    "mlp.down": "hidden",
    "norm": "vector",
    "qk_norm": "vector",
    "bias": "vector",
    "final_norm": "vector",
    "unembed": "output",
}
# Roles that live inside residual blocks (their updates are scaled by the residual multiplier).
BLOCK_ROLES: frozenset[str] = frozenset(r for r, k in ROLES.items() if k == "hidden") | {"norm", "qk_norm", "bias"}

# Named sets of roles, used to write role lists short in reports ("hidden" for all seven matrices).
ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "all roles": tuple(ROLES),
    "hidden": tuple(r for r, k in ROLES.items() if k == "hidden"),
    "attn.*": ("attn.q", "attn.k", "attn.v", "attn.o"),
    "mlp.*": ("mlp.up", "mlp.gate", "mlp.down"),
}


def compress_roles(names) -> str:
    """A list of roles as text, complete groups written short: every role as 'all roles', all hidden matrices as
    'hidden', the four attention matrices as 'attn.*', the three MLP matrices as 'mlp.*'."""
    out = list(dict.fromkeys(names))
    for label, members in ROLE_GROUPS.items():
        if all(m in out for m in members):
            at = min(out.index(m) for m in members)
            out = [x for x in out if x not in members]
            out.insert(at, label)
    return ", ".join(out)


# Hyperparameter kinds of an AdamW role (the root's default optimizer).  Each optimizer's own targets and
# word-valued settings (`optimizer = muon`, `decay = independent`, `nesterov = true`) live in
# compiler/optimizers.py.  `init_var`, `1-beta1`, `1-beta2`, `1-momentum` are accepted as targets too and
# rewritten onto init_std / beta1 / beta2 / momentum.
HP_KINDS: tuple[str, ...] = ("init_mean", "init_std", "lr", "weight_decay", "beta1", "beta2", "eps", "mult")
TARGET_ALIASES: tuple[str, ...] = ("init_var", "1-beta1", "1-beta2", "1-momentum")
# Kinds that get an implicit per-module tunable multiplier `kind[role]` (default 1).
MODULE_HP_KINDS: tuple[str, ...] = ("init_std", "lr", "weight_decay", "eps", "mult")

# Forward sites: op-level multipliers the model applies.
SITES: dict[str, str] = {
    "residual.attn": "attention residual-branch multiplier",
    "residual.mlp": "MLP residual-branch multiplier",
    "attn.scale": "attention logit scale (SDPA `scale=`)",
    "output.mult": "logit multiplier (on the unembedding)",
    "embed.mult": "embedding output multiplier",
}
# Which role's effective forward multiplier a site contributes to (abc-analysis).
SITE_OF_ROLE: dict[str, str] = {"unembed": "output.mult", "embed": "embed.mult"}
# The roles whose tensors a site acts on: a site matters to a model only if one of these roles is bound.
SITE_ROLES: dict[str, tuple[str, ...]] = {
    "residual.attn": ("attn.q", "attn.k", "attn.v", "attn.o"),
    "residual.mlp": ("mlp.up", "mlp.gate", "mlp.down"),
    "attn.scale": ("attn.q", "attn.k"),
    "output.mult": ("unembed",),
    "embed.mult": ("embed",),
}
# Folding (the abc-symmetry, compiler/optimizers.py): the role whose tensors absorb a site's multiplier c (with the
# biases of those linears: c (W x + b) = (c W) x + (c b)).  A per-role multiplier `mult[<role>]` folds into its role.
FOLD_INTO: dict[str, str] = {
    "output.mult": "unembed",
    "embed.mult": "embed",
    "residual.attn": "attn.o",  # the last linear of each residual branch
    "residual.mlp": "mlp.down",
    "attn.scale": "attn.q",  # exact only without QK-norm and with queries in a tensor of their own
}
# The attention scale every model applies by itself, d_head^ATTN_SCALE_EXPONENT (SDPA's default 1/sqrt(d_head)):
# folding attn.scale leaves this value, every other site is left at 1.
ATTN_SCALE_EXPONENT = Fraction(-1, 2)
# Sites that only the module graph locates (which matrices end the residual branches, which are the queries).
BRANCH_SITES: tuple[str, ...] = ("residual.attn", "residual.mlp", "attn.scale")
# Sites a readout sharing its tensor with the embedding cannot absorb (the tensor trains as the embedding).
TIED_BLOCKED: tuple[str, ...] = ("output.mult", "embed.mult", "mult[embed]")
# Forward hooks (runtime/plan/multiplier_hooks.py) see module outputs: they apply these sites and per-role
# multipliers; the rest sits inside ops (attention kernels, matmuls) and must be folded or built into the model.
HOOK_SITES: tuple[str, ...] = ("output.mult", "embed.mult", "residual.attn", "residual.mlp")
HOOK_ROLE_MULTS: tuple[str, ...] = ("mult[unembed]", "mult[embed]")
# Which role's module ends each residual branch kind (where a residual hook goes).
BRANCH_END_ROLES: dict[str, str] = {"attn": "attn.o", "mlp": "mlp.down"}
# Norm roles: a norm's bias (its shift) starts at 0 whatever the gain's init_mean says.
NORM_ROLES: tuple[str, ...] = ("norm", "qk_norm", "final_norm")


def site_identity(site: str, d_head: float) -> float:
    """The value at which a site changes nothing in a model that lacks it: d_head^-1/2 for attn.scale, else 1."""
    return float(d_head) ** float(ATTN_SCALE_EXPONENT) if site == "attn.scale" else 1.0


def role_mult_key(role: str) -> str:
    """The multiplier key of a per-role forward multiplier in a plan ("mult[mlp.gate]")."""
    return f"mult[{role}]"


# Per-tensor symbols; their width exponents follow from the role's width class.  `fan_in`, `fan_out` and the
# block index `l` (0-based, block roles only; with the depth `L` a file writes `lr *= (1 + l) / L`) may appear in
# role rules; the plan passes each tensor's own values.
TENSOR_SYMBOLS: tuple[str, ...] = ("fan_in", "fan_out", "fan_in0", "fan_out0")
ROLE_RULE_SYMBOLS: tuple[str, ...] = ("fan_in", "fan_out", "l")
# Fans of the bundled GPT as (constant, width exponent) for (fan_in, fan_out): what `show` and checks use when no
# model is at hand (vocabulary 256 bytes; SwiGLU hidden width 3n; vectors have fan_in 1).
BUNDLED_VOCAB = 256
DEFAULT_FANS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "embed": ((BUNDLED_VOCAB, 0), (1, 1)),
    "attn.q": ((1, 1), (1, 1)),
    "attn.k": ((1, 1), (1, 1)),
    "attn.v": ((1, 1), (1, 1)),
    "attn.o": ((1, 1), (1, 1)),
    "mlp.up": ((1, 1), (3, 1)),
    "mlp.gate": ((1, 1), (3, 1)),
    "mlp.down": ((3, 1), (1, 1)),
    "norm": ((1, 0), (1, 1)),
    "qk_norm": ((1, 0), (32, 0)),  # QK-norm gains have head_dim entries: width-free at a fixed head dimension
    "bias": ((1, 0), (1, 1)),
    "final_norm": ((1, 0), (1, 1)),
    "unembed": ((1, 1), (BUNDLED_VOCAB, 0)),
}
FAN_WIDTH_EXPONENT: dict[str, tuple[int, int]] = {  # (fan_in, fan_out) exponents of m_N
    "input": (0, 1),
    "hidden": (1, 1),
    "output": (1, 0),
    "vector": (0, 1),
}

BUILTIN_FUNCTIONS: dict[str, int] = {"sqrt": 1, "min": 2, "max": 2, "log": 1, "exp": 1}

RESERVED: frozenset[str] = frozenset(
    set(AXES)
    | set(AXES.values())
    | set(TENSOR_SYMBOLS)
    | set(ROLE_RULE_SYMBOLS)
    | set(BUILTIN_FUNCTIONS)
    | {f"{a}0" for a in AXES}
    | {"S", "S0", "m_S"}
)
