"""The one exception family users see: every error carries a location and renders as one clear line."""

from __future__ import annotations


class ScalecError(Exception):
    """Base class of every user-facing scalec error; `str(e)` is the message the CLI prints."""

    exit_code = 1


class InputsChangedError(ScalecError):
    """A run's inputs (rule chain, corpus, model file) are not those it was keyed on or started with."""
