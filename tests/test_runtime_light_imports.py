"""The runtime never imports the compiler's heavy packages: `import scalec.runtime`, make_plan with folding from an
already compiled rule module, and a training run import none of sympy, lark, jinja2 (only `scalec.load`, which
compiles a rule file, needs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import scalec

HEAVY = ("sympy", "lark", "jinja2")

SCRIPT = textwrap.dedent(
    """
    import builtins, importlib.util, json, sys
    heavy = {HEAVY!r}
    importers = {{}}  # heavy package -> the module whose import statement loaded it first
    _import = builtins.__import__

    def _watch(name, globals=None, *args, **kwargs):
        top = name.split(".")[0]
        if top in heavy and top not in sys.modules and top not in importers:
            importers[top] = (globals or {{}}).get("__name__", "?")
        return _import(name, globals, *args, **kwargs)

    builtins.__import__ = _watch
    spec = importlib.util.spec_from_file_location("compiled_rule", sys.argv[1])
    rule = importlib.util.module_from_spec(spec)
    sys.modules["compiled_rule"] = rule
    spec.loader.exec_module(rule)
    seen = {{}}

    def compiler_parts():
        return sorted(m for m in sys.modules if m.startswith(("scalec.dsl", "scalec.compiler.parameterisation",
                      "scalec.compiler.folding", "scalec.compiler.codegen", "scalec.compiler.checks")))

    import scalec.runtime
    seen["import scalec.runtime"] = [m for m in heavy if m in sys.modules] + compiler_parts()
    from scalec.runtime import make_plan
    from scalec.runtime.trainer.gpt import GPT, GPTConfig
    cfg = GPTConfig(width=32, depth=2, head_dim=8, seq_len=8, vocab=32)
    plan = make_plan(rule, GPT(cfg), {{"n": 32, "L": 2, "d_head": 8}}, applied_sites={{"output.mult"}}, fold=True)
    assert plan.folded, "nothing was folded"
    seen["make_plan (folding)"] = [m for m in heavy if m in sys.modules] + compiler_parts()
    if len(sys.argv) > 2:
        from scalec.runtime.trainer.train import train
        from scalec.runtime.trainer.train_config import TrainConfig
        config = TrainConfig(rule="mup", width=32, depth=2, head_dim=16, seq_len=16, batch=4096, duration=2**16,
                             eval_every=16, eval_batches=1, corpus=sys.argv[2], progress=False, seed=0)
        assert train(config, rules=rule).status == "finished"
        # torch may load sympy itself (torch.fx's symbolic shapes); no scalec module may.
        seen["train()"] = [f"{{m}} (by {{who}})" for m, who in importers.items() if who.startswith("scalec")]
        seen["train()"] += compiler_parts()
    print(json.dumps(seen))
    """
).format(HEAVY=HEAVY)


def _run(tmp_path, *extra: str) -> dict[str, list[str]]:
    source = tmp_path / "compiled_mup.py"
    source.write_text(scalec.load("mup").source)
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(source), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "SCALEC_CACHE": str(tmp_path / "cache")},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_runtime_import_and_make_plan_with_folding_import_no_compiler_packages(tmp_path):
    seen = _run(tmp_path)
    assert seen == {"import scalec.runtime": [], "make_plan (folding)": []}


@pytest.mark.slow
def test_a_training_run_imports_no_compiler_packages(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(bytes(range(32, 127)) * 400)
    seen = _run(tmp_path, str(corpus))
    assert seen["train()"] == []


def test_the_search_driver_and_its_workers_load_without_torch():
    """`scalec search`'s driver and worker modules (the supervisor, optuna storage, the worker loop) load without
    torch: a worker spawns in ~0.1 s and only the run function it calls pays for torch. The input-hash names they
    read sit beside the corpus hashing, which needs torch's data module only when it hashes."""
    code = "import sys, scalec.runtime.studies.search; print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
