"""The bundled GPT trainer: model, data, loop, checkpoints and metrics."""
