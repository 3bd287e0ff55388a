"""The README's "Your model in one line" snippets run as printed, with the values their comments state."""

from __future__ import annotations

import pytest
import torch

from tests.test_readme_snippets import MyModel, run_checking_comments, snippet


def test_one_line_snippets_run_and_state_true_values():
    torch.manual_seed(0)
    tied = MyModel(d=256, depth=2)
    tied.head.weight = tied.tok.weight
    ns: dict = {"model": MyModel(d=256, depth=2), "tied_model": tied}
    assert run_checking_comments(snippet('shape={"n": 256}, hp={"eta": 2**-7}, roles=roles, fold=True'), ns) == 1
    assert all(g["lr"] == 0.5 * g["base_lr"] for g in ns["opt"].param_groups)
    assert run_checking_comments(snippet("tied_model"), ns) == 1
    assert not any(m._forward_hooks for m in tied.modules())  # removed


@pytest.mark.slow
def test_hf_trainer_snippet_trains(tmp_path):
    try:
        import accelerate  # noqa: F401
        import transformers as tf
    except (ImportError, RuntimeError):  # pragma: no cover - depends on the environment
        pytest.skip("transformers + accelerate (the `hf` extra) are not importable")

    class Tokens(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 16

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids = torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": ids}

    args = tf.TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to=[], use_cpu=True,
        save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    ns: dict = {"args": args, "dataset": Tokens()}
    torch.manual_seed(0)
    assert run_checking_comments(snippet("hf.optimizers(model"), ns) == 1
    assert ns["trainer"].state.global_step == 2
