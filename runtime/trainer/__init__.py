"""The bundled GPT trainer: model, data, loop, checkpoints and metrics. Names load their module on first use
(`scalec.runtime.trainer.train.train` runs a training; the trainer imports torch)."""

from __future__ import annotations

from scalec.lazy_module import lazy_face

__all__ = ["GPT", "GPTConfig", "RunSummary", "TrainConfig"]

__getattr__, __dir__ = lazy_face(
    globals(),
    {
        "GPT": "scalec.runtime.trainer.gpt",
        "GPTConfig": "scalec.runtime.trainer.gpt",
        "RunSummary": "scalec.runtime.trainer.train_config",
        "TrainConfig": "scalec.runtime.trainer.train_config",
    },
)
