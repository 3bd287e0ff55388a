"""What a coordinate check measures: the modules and metrics of its curves, its two sweeps, its default eta and
its error (runtime/studies/coord_check.py runs it, coord_plot.py draws it, coord_subject.py builds its models)."""

from __future__ import annotations

from scalec.errors import ScalecError

# Modules reported per sweep. "attn"/"mlp" are the summed branch contributions of all blocks to the residual
# stream (after the residual multipliers): the quantity residual scaling keeps Theta(1) as depth grows.
MODULES: tuple[str, ...] = ("embed", "attn", "mlp", "residual", "final_norm", "logits")
METRICS: tuple[str, ...] = ("act", "update")
METRIC_TITLES: dict[str, str] = {"act": "activation RMS  |h_t|", "update": "update RMS  |h_t - h_0|"}
SWEEPS: tuple[str, ...] = ("width", "depth")
DEFAULT_ETA = 2.0**-6


class CoordCheckError(ScalecError):
    """Bad coordinate-check input (sizes, data)."""
