"""Fault injection into files read back and outputs that cannot be written: deeply nested JSON, a NaN "finished"
summary, corrupt store files, a read-only or wrong --out. Each is one `error:` line naming the file and the fix;
nothing is deleted or overwritten."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalec.cli import app
from scalec.runtime.atomic_io import MAX_DEPTH, ReadError, read_json
from scalec.runtime.studies.run_store import RunStore
from tests.tiny_runs import write_corpus, write_tiny_rule

DEEP = "[" * 200_000  # what the audit wrote: json.loads alone dies with RecursionError


class Interrupt(Exception):
    pass


def _one_line(result, *needles: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error:") and all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


# ---- the one reader -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [DEEP, "[" * 100 + "]" * 100, '{"a": ' * 70 + "1" + "}" * 70])
def test_nesting_beyond_the_limit_is_one_read_error(tmp_path, text):
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(ReadError, match=f"{path} nests deeper than {MAX_DEPTH} levels") as err:
        read_json(path, "move it away")
    assert "\n" not in str(err.value)


def test_reader_names_the_problem_its_check_finds(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"x": NaN}')
    check = lambda d: None if math.isfinite(d["x"]) else "x is not finite"  # noqa: E731
    with pytest.raises(ReadError, match=r"f.json is not a thing \(x is not finite\); fix it"):
        read_json(path, "fix it", check, "thing")


# ---- run dirs -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    rule = write_tiny_rule(root)
    corpus = write_corpus(root)
    return rule, corpus


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory):
    """A finished 2-step run to copy."""
    out = tmp_path_factory.mktemp("done") / "run"
    result = CliRunner().invoke(app, _args(setup, out))
    assert result.exit_code == 0, result.output
    return out


def _args(setup, out) -> list[str]:
    rule, corpus = setup
    sizes = ["--width", "32", "--depth", "2", "--head-dim", "16", "--seq-len", "32", "--batch", "128", "--steps", "2"]
    rest = ["--hp", "eta=2^-6", "--corpus", str(corpus), "--device", "cpu", "--quiet", "--out", str(out)]
    return ["train", str(rule), *sizes, *rest]


@pytest.fixture
def run(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("config.json", DEEP, "nests deeper than"),
        ("summary.json", DEEP, "nests deeper than"),
        ("metrics.jsonl", '{"step": 0}\n' + DEEP + "\n" + '{"step": 1}\n', "metrics.jsonl:2 nests deeper than"),
        ("metrics.jsonl", '{"step": 0}\n' + DEEP + "\n", "metrics.jsonl:2 nests deeper than"),
    ],
    ids=["config", "summary", "metrics-middle", "metrics-last"],
)
def test_deeply_nested_run_file_is_one_line_and_nothing_is_lost(setup, run, name, content, needle):
    if name == "metrics.jsonl":
        (run / "summary.json").unlink()  # metrics are read back when a run resumes
    (run / name).write_text(content)
    before = _snapshot(run)
    _one_line(CliRunner().invoke(app, _args(setup, run)), name, needle)
    assert _snapshot(run) == before


@pytest.mark.slow
@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_summary_that_says_finished_with_a_non_finite_loss_is_not_a_finished_run(setup, run, value):
    text = (run / "summary.json").read_text()
    summary = json.loads(text)
    assert summary["status"] == "finished"
    (run / "summary.json").write_text(text.replace(json.dumps(summary["final_val_loss"]), value, 1))
    before = _snapshot(run)
    _one_line(CliRunner().invoke(app, _args(setup, run)), "summary.json", "not finite", "move it away")
    assert _snapshot(run) == before


@pytest.mark.slow
def test_finished_run_in_a_read_only_folder_is_reported(setup, run, monkeypatch):
    from scalec.runtime.trainer import run_dir

    real_open = os.open

    def read_only(path, flags, *args, **kw):
        if Path(path).parent == run and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(run_dir.os, "open", read_only)
    before = _snapshot(run)
    result = CliRunner().invoke(app, _args(setup, run))
    assert result.exit_code == 0 and result.output.startswith("finished: val loss"), result.output
    assert _snapshot(run) == before
    (run / "summary.json").unlink()  # an unfinished run there cannot go on: one line
    _one_line(CliRunner().invoke(app, _args(setup, run)), f"--out {run}", "not a writable folder")


# ---- outputs that cannot be written (sysfs is read-only even for root) ------------------------------------------


def test_compile_to_a_read_only_folder_is_one_line():
    _one_line(CliRunner().invoke(app, ["compile", "mup", "-o", "/sys/m.py"]), "-o", "/sys/m.py")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sweep", "coord-check"])
def test_study_output_in_a_read_only_folder_is_one_line_before_any_work(command):
    args = [command, "mup", "--out", "/sys/scalec-out"]
    args += ["--hp", "eta=2^-8,2^-7", "--steps", "20"] if command == "sweep" else ["--steps", "2"]
    _one_line(CliRunner().invoke(app, args), "--out /sys/scalec-out", "pass a writable --out")


@pytest.mark.slow
def test_sweep_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("keep me")
    args = ["sweep", "mup", "--hp", "eta=2^-8,2^-7", "--steps", "20", "--out", str(tmp_path / "file")]
    _one_line(CliRunner().invoke(app, args), "is a file", "pass a folder as --out")
    assert (tmp_path / "file").read_text() == "keep me"


def test_any_os_error_that_escapes_a_command_is_one_located_line(capsys):
    import typer

    from scalec.cli_support import guarded

    @guarded
    def command() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/x.json")

    with pytest.raises(typer.Exit) as stop:
        command()
    assert stop.value.exit_code == 1
    err = capsys.readouterr().err
    assert err == "error: /data/x.json: No space left on device; free some space and run the command again\n"


# ---- the study store --------------------------------------------------------------------------------------------


def _finished_store(root: Path) -> tuple[RunStore, dict]:
    config = {"rule": "mup", "hp": {"eta": 0.01}, "seed": 0}
    store = RunStore(root)
    store.run(config, lambda c, out: {"status": "finished", "final_val_loss": 2.0})
    return store, config


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("result.json", DEEP, "nests deeper than"),
        ("run.json", DEEP, "nests deeper than"),
        ("result.json", '{"status": "finished", "summary": {"final_val_loss": NaN}}', "not a finite number"),
        ("result.json", '{"status": "done"}', "not a run result"),
    ],
    ids=["result-deep", "run-deep", "result-nan", "result-status"],
)
def test_corrupt_store_file_is_one_line_naming_it(tmp_path, name, content, needle):
    store, config = _finished_store(tmp_path / "store")
    (path,) = (tmp_path / "store" / "runs").glob(f"*/{name}")
    path.write_text(content)
    with pytest.raises(ReadError, match=needle) as err:
        store.run(config, lambda c, out: pytest.fail("a corrupt result must not be retrained over"))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert path.read_text() == content


@pytest.mark.parametrize("text", [DEEP, '{"dims": 3}', "not json"], ids=["deep", "wrong-shape", "not-json"])
def test_corrupt_search_settings_are_one_line(tmp_path, text):
    from scalec.runtime.studies.search_settings import SearchError, SearchSettings

    with pytest.raises(SearchError, match="settings.json") as err:
        SearchSettings.from_json(text, str(tmp_path / "settings.json"))
    assert "\n" not in str(err.value)
