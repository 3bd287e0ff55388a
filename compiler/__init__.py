"""The rule compiler: parse, resolve, check (sympy) and generate (jinja2) a rule file's module; `load` serves a
checked rule from the on-disk cache without them. Names load their module on first use."""

from __future__ import annotations

from scalec.lazy_module import lazy_face

__all__ = ["Parameterisation", "RuleSummary", "compile_ir", "import_source", "load", "rule_summary"]

__getattr__, __dir__ = lazy_face(
    globals(),
    {
        "Parameterisation": "scalec.compiler.parameterisation",
        "RuleSummary": "scalec.compiler.rule_cache",
        "compile_ir": "scalec.compiler.pipeline",
        "import_source": "scalec.compiler.parameterisation",
        "load": "scalec.compiler.parameterisation",
        "rule_summary": "scalec.compiler.parameterisation",
    },
)
