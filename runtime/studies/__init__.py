"""Studies: coordinate checks, reports, sweeps, searches and transfer studies. Names load their module on first use
(the studies import torch); `scalec.coord_check`, `scalec.sweep`, `scalec.search` and `scalec.transfer` are the
user-facing entry points."""

from __future__ import annotations

from scalec.lazy_module import lazy_face

__all__ = [
    "CoordCheckConfig",
    "CoordCheckResult",
    "run_coord_check",
    "run_search",
    "sweep_study",
    "transfer_study",
]

__getattr__, __dir__ = lazy_face(
    globals(),
    {
        "CoordCheckConfig": "scalec.runtime.studies.coord_check",
        "CoordCheckResult": "scalec.runtime.studies.coord_check",
        "run_coord_check": "scalec.runtime.studies.coord_check",
        "run_search": "scalec.runtime.studies.search",
        "sweep_study": "scalec.runtime.studies.studies",
        "transfer_study": "scalec.runtime.studies.studies",
    },
)
