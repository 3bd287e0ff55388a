"""Write litgpt_names.json: the parameter names and shapes of litgpt's own `GPT` class at small configs, read
from a litgpt source checkout (not an installed package: `litgpt/__init__.py` imports lightning).

Usage: python tests/data/make_litgpt_names.py LITGPT_CHECKOUT COMMIT
`litgpt/model.py` imports one function from `litgpt/scripts/convert_hf_checkpoint.py`, which imports lightning;
that import is stubbed (the function converts checkpoints and plays no part in building the model).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import torch

# Three families: Llama (SwiGLU LLaMAMLP, grouped-query qkv), Pythia (GptNeoxMLP, LayerNorm with biases,
# parallel residual), Qwen3 (QK-norm); shrunk to test size with the config's own fields.
SMALL = dict(
    n_layer=2, n_embd=128, n_head=4, head_size=32, intermediate_size=256, vocab_size=256, padded_vocab_size=256
)
CONFIGS = {
    "Llama-3.2-1B": dict(SMALL, n_query_groups=2),
    "pythia-14m": dict(SMALL, n_query_groups=4),
    "Qwen3-0.6B": dict(SMALL, n_query_groups=2),
}


def main(checkout: Path, commit: str) -> None:
    root = checkout / "litgpt"
    pkg = types.ModuleType("litgpt")
    pkg.__path__ = [str(root)]
    sys.modules["litgpt"] = pkg
    stub = types.ModuleType("litgpt.scripts.convert_hf_checkpoint")
    stub.qkv_reassemble = None
    sys.modules["litgpt.scripts"] = types.ModuleType("litgpt.scripts")
    sys.modules[stub.__name__] = stub
    for name in ("config", "model"):
        spec = importlib.util.spec_from_file_location(f"litgpt.{name}", root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(pkg, name, module)
    models = {}
    for name, overrides in CONFIGS.items():
        cfg = pkg.config.Config.from_name(name, **overrides)
        with torch.device("meta"):
            model = pkg.model.GPT(cfg)
        models[name] = {
            "config": overrides,
            "parameters": {n: "x".join(str(d) for d in p.shape) for n, p in model.named_parameters()},
        }
    out = {"source": f"Lightning-AI/litgpt@{commit}", "file": "litgpt/model.py (class GPT)", "models": models}
    (Path(__file__).parent / "litgpt_names.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
