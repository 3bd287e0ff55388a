"""The rule-file language: its lark grammar and parser, the AST, the canonical formatter and located errors.
Names load their module on first use (the parser loads lark)."""

from __future__ import annotations

from scalec.lazy_module import lazy_face

__all__ = ["RuleError", "format_file", "parse", "parse_file"]

__getattr__, __dir__ = lazy_face(
    globals(),
    {
        "RuleError": "scalec.dsl.errors",
        "format_file": "scalec.dsl.formatter",
        "parse": "scalec.dsl.parser",
        "parse_file": "scalec.dsl.parser",
    },
)
