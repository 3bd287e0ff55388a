"""Fault injection: a password in `--storage postgresql://user:PASSWORD@host/db` is masked in every message and
never written to disk; the workers a search starts get it from SCALEC_STORAGE_PASSWORD."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scalec.redact import PASSWORD_ENV, mask_secrets, password_of, with_password, without_password

SECRET = "Hunter2-s3cr3t"
URL = f"postgresql://alice:{SECRET}@127.0.0.1:1/studies"  # port 1: nothing listens, the connection is refused


@pytest.mark.parametrize(
    "text",
    [
        f"error: --storage {URL}: cannot connect",
        f"(psycopg.OperationalError) connection to postgresql://alice:{SECRET}@db/x failed",
        f"mysql://bob:{SECRET}@h/d and postgresql+psycopg://carol:{SECRET}@h:5432/d",
        f"postgresql://alice:{SECRET}/with@slash@host/db",  # an unencoded '/' or '@' in the password
    ],
)
def test_every_password_in_a_message_is_masked(text):
    masked = mask_secrets(text)
    assert SECRET not in masked and "***@" in masked


def test_urls_without_passwords_are_left_alone():
    for text in ("sqlite:///study.db", "postgresql://alice@host/db", "https://host:8080/path", "a:b@c"):
        assert mask_secrets(text) == text


def test_password_leaves_the_url_for_disk_and_comes_back_from_the_environment():
    stored = without_password(URL)
    assert stored == "postgresql://alice@127.0.0.1:1/studies" and password_of(URL) == SECRET
    assert with_password(stored, {PASSWORD_ENV: SECRET}) == URL
    assert with_password(stored, {}) == stored  # no password given: the driver's own (PGPASSWORD, .pgpass)
    assert with_password(URL, {PASSWORD_ENV: "other"}) == URL  # the URL's own password wins


def test_search_settings_json_never_holds_the_password(tmp_path):
    from scalec.runtime.studies.search_settings import Dim, SearchSettings

    dims, fixed = [Dim("eta", 1e-3, 1e-1)], {"rule": "mup"}
    settings = SearchSettings(dims, fixed, 4, str(tmp_path), storage=URL, run_fn="not_here:run")
    text = settings.to_json()
    assert SECRET not in text and json.loads(text)["storage"] == without_password(URL)
    assert settings.storage == URL  # kept in memory for this process's own connection


@pytest.mark.slow  # imports optuna and sqlalchemy (~1.5 s)
def test_storage_errors_mask_the_password(tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("sqlalchemy")
    from scalec.runtime.studies.search_settings import Dim, SearchError, SearchSettings
    from scalec.runtime.studies.search_storage import make_storage

    settings = SearchSettings([Dim("eta", 1e-3, 1e-1)], {"rule": "mup"}, 4, str(tmp_path), storage=URL)
    with pytest.raises(SearchError) as err:
        make_storage(settings)
    assert SECRET not in str(err.value) and "alice:***@127.0.0.1" in str(err.value)


@pytest.mark.slow
def test_search_cli_with_a_password_url_writes_and_prints_no_password(tmp_path):
    pytest.importorskip("optuna")
    from scalec.cli import app

    out = tmp_path / "search"
    args = ["search", "mup", "--storage", URL, "--trials", "2", "--steps", "20", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("search:")]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert SECRET not in result.output
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
