"""Run settings are declared once (TrainConfig): a study's RunArgs take their names and defaults from it, the CLI's
sweep, search and transfer share one options object, and settings added later leave older run configs (and the
run-dir names hashed from them) unchanged."""

from __future__ import annotations

import dataclasses

import pytest

from scalec.commands._options import STUDY_OPTIONS
from scalec.runtime.studies.run_args import RunArgs, RunArgsError
from scalec.runtime.trainer.train_config import TrainConfig, TrainConfigError


def test_run_args_take_trainconfig_defaults_and_keep_configs_short():
    config = RunArgs(rule="mup", width=64, depth=2, batch=4096, steps=10, seq_len=128).config()
    # seed and head_dim always written (TrainConfig's 0 and 32); the rest only where they differ from TrainConfig.
    assert config == {
        "rule": "mup",
        "width": 64,
        "depth": 2,
        "batch": 4096,
        "seq_len": 128,
        "head_dim": 32,
        "hp": {},
        "seed": 0,
        "steps": 10,
    }
    assert RunArgs(rule="mup", width=64, depth=2, batch=4096, steps=10, seq_len=128, qk_norm=False).config() == config
    with_device = RunArgs(rule="mup", width=64, depth=2, batch=4096, steps=10, seq_len=128, device="cpu").config()
    assert with_device == {**config, "device": "cpu"}


def test_run_args_refuse_what_trainconfig_does_not_know_or_refuses():
    with pytest.raises(RunArgsError, match=r"unknown run setting\(s\) \['widht'\]"):
        RunArgs(rule="mup", widht=64)
    with pytest.raises(RunArgsError, match="give the training length"):
        RunArgs(rule="mup", width=64).config()
    with pytest.raises(RunArgsError, match="not a multiple of --seq-len"):
        RunArgs(rule="mup", batch=1000, seq_len=128, steps=2).config()


def test_settings_added_later_stay_out_of_older_configs():
    config = TrainConfig(steps=3).to_dict()
    old_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {
        "model",
        "roles",
        "model_sha256",
        "objective",
        "objective_sha256",
        "rule_sha256",
        "corpus_sha256",
    }
    assert set(config) == old_fields  # so runs/<rule>_n<w>_L<d>_<hash> of an earlier run is found again
    assert TrainConfig(steps=3, model="m.py:build", head_dim=None).to_dict()["model"] == "m.py:build"
    with pytest.raises(TrainConfigError, match="--roles binds the parameters of --model"):
        TrainConfig(steps=3, roles={"*": "embed"})


@pytest.mark.parametrize("command", ["sweep", "search", "transfer"])
def test_sweep_search_and_transfer_take_the_one_shared_options_object(command):
    from scalec.cli import load_command

    cmd = load_command(command)
    names = {p.name for p in cmd.params}
    assert set(STUDY_OPTIONS) <= names


def test_a_model_file_edited_after_its_runs_were_keyed_is_refused(tmp_path):
    from scalec.runtime.studies.user_model import UserModelError, check_unchanged, model_settings

    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\ndef build(width, depth):\n    return nn.Linear(width, width)\n")
    settings = model_settings(f"{path}:build", None, None)
    assert settings["model_sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    check_unchanged(settings["model"], settings["model_sha256"], "--model")
    path.write_text(path.read_text() + "# edited\n")
    with pytest.raises(UserModelError, match="the file changed since this run was keyed"):
        check_unchanged(settings["model"], settings["model_sha256"], "--model")
