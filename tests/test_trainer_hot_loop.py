"""The hot loop: no host reads between log steps, accumulated gradients equal the full batch's, device-side
divergence watch, one metrics record per log step."""

from __future__ import annotations

import contextlib
import json
from collections import Counter

import pytest
import torch

from scalec.runtime.trainer.gpt import GPT, GPTConfig
from scalec.runtime.trainer.step import StepStats, train_step
from scalec.runtime.trainer.train_config import TrainConfig
from tests.tiny_runs import write_corpus, write_tiny_rule

# Tensor methods that copy a value to the host (on CUDA: wait for the device). `numpy()` is not one: it refuses
# device tensors, and the batch sampler uses it on CPU tensors it draws itself.


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    import scalec

    return scalec.load(str(write_tiny_rule(tmp_path_factory.mktemp("rules"))))


@pytest.fixture
def corpus(tmp_path):
    return str(write_corpus(tmp_path))


def tiny(corpus: str, **kw) -> TrainConfig:
    base = dict(
        rule="tiny.scale",
        width=32,
        depth=2,
        head_dim=16,
        seq_len=32,
        batch=4 * 32,
        steps=12,
        eval_every=6,
        log_every=4,
        eval_batches=2,
        corpus=corpus,
        progress=False,
        hp={"eta": 2**-6},
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_no_host_reads_between_log_steps(tmp_path, corpus, rules, host_reads):
    from scalec.runtime.trainer.train import train

    per_step: dict[int, Counter] = {}
    logged = set()

    def on_step(step, record):
        per_step[step] = Counter(host_reads)  # reads of this step's device work and host work
        host_reads.clear()
        if record is not None:
            logged.add(step)

    summary = train(tiny(corpus, out_dir=str(tmp_path / "run")), rules=rules, on_step=on_step)
    assert summary.status == "finished" and sorted(per_step) == list(range(1, 13))
    assert logged == {1, 4, 6, 8, 12}  # the first step of the process, every 4th, every evaluation
    quiet = {s: dict(c) for s, c in per_step.items() if s not in logged}
    assert quiet == {s: {} for s in (2, 3, 5, 7, 9, 10, 11)}
    assert all(per_step[s] for s in logged)  # the counter does see the reads of log steps
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 4, 6, 8, 12]  # one record per log step


class _Capture:
    """A stand-in optimizer that keeps the gradients `step()` would apply."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.grads = model, None

    def step(self) -> None:
        self.grads = [p.grad.clone() for p in self.model.parameters()]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.zero_grad(set_to_none=set_to_none)


def test_accumulated_micro_batches_give_the_full_batch_gradient():
    torch.manual_seed(0)
    model = GPT(GPTConfig(width=16, depth=1, head_dim=8, seq_len=8)).double()
    x = torch.randint(0, 256, (4, 8), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    # The reference: one backward of the loss over all 4 sequences, outside train_step.
    model.zero_grad()
    model(x, y).backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)  # train_step starts from cleared gradients (it clears them when done)
    for micro in (4, 2, 1):
        opt = _Capture(model)
        loss, norm = train_step(model, opt, list(model.parameters()), x, y, micro, contextlib.nullcontext, None)
        assert norm is None and torch.allclose(loss, model(x, y).detach(), rtol=1e-6)
        for got, want in zip(opt.grads, full, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_non_finite_steps_are_watched_on_the_device():
    stats = StepStats(torch.device("cpu"))
    for loss, norm in ((1.0, 2.0), (0.5, 1.0), (float("nan"), 1.0), (0.5, 1.0)):
        stats.update(torch.tensor(loss), torch.tensor(norm))
    reading = stats.read()
    assert not reading.healthy and reading.finite_steps == 2
    stats = StepStats(torch.device("cpu"))
    stats.update(torch.tensor(1.0), torch.tensor(float("inf")))  # a finite loss with an overflowing gradient
    assert not stats.read().healthy
    stats = StepStats(torch.device("cpu"))
    stats.update(torch.tensor(3.0), None)
    assert stats.read() == type(stats.read())(3.0, None, 1, True)


@pytest.mark.slow
def test_divergence_between_log_steps_stops_at_the_next_and_never_checkpoints_it(tmp_path, corpus, rules):
    from scalec.runtime.trainer.train import train

    out = tmp_path / "run"
    cfg = tiny(corpus, out_dir=str(out), hp={"eta": 1e30}, log_every=1000, eval_every=1000, checkpoint_every=6)
    s = train(cfg, rules=rules)  # log steps 1, 6, 12: the overflow after step 1 is seen at step 6
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert s.status == "diverged" and 1 <= s.steps < 6 and last == {"step": s.steps + 1, "diverged": True, **last}
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
    assert not (out / "checkpoint.pt").exists()  # step 6 was not finite: never saved
