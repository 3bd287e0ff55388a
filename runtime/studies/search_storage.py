"""Where a search's study lives: a JournalStorage file (`<out>/study.journal`) by default, or an RDB URL
(`sqlite:///...`, `postgresql://...`) that workers on many machines share. RDB storages run Optuna's heartbeat,
so a trial whose worker died anywhere turns FAIL after the grace period. Every way the storage cannot be opened
is one SearchError line."""

from __future__ import annotations

import importlib
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalec.redact import mask_secrets, with_password
from scalec.runtime.studies.search_samplers import make_sampler
from scalec.runtime.studies.search_settings import SearchError, SearchSettings
from scalec.runtime.trainer.run_inputs import INPUT_FIELDS, INPUT_NAMES

RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql")


@dataclass
class OpenStudy:
    """A loaded study with the storage it was opened on (so nothing reaches into `study._storage`)."""

    study: Any
    storage: Any
    rdb: bool

    @property
    def study_id(self) -> int:
        """The storage's id of the study."""
        return self.storage.get_study_id_from_name(self.study.study_name)

    def trial_id(self, number: int) -> int:
        """The storage's id of trial `number`."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)


def flock_lock(path: Path) -> Any:
    """A journal lock the kernel releases when its holder dies (fcntl.flock), so a search killed while it
    appended to the journal never blocks the rerun (Optuna's default symlink lock waits out a 30 s grace period
    and then breaks the lock, even from a live holder). None where fcntl is unavailable (Optuna's default)."""
    try:
        import fcntl
    except ImportError:
        return None

    class FlockLock:  # Optuna's journal lock protocol: acquire() -> True, release()
        def __init__(self) -> None:
            self._fd: int | None = None

        def acquire(self) -> bool:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
            return True

        def release(self) -> None:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    return FlockLock()


def is_rdb(url: str | None) -> bool:
    """True for an RDB URL (heartbeat available), False for the journal file."""
    return url is not None and url.startswith(RDB_PREFIXES)


def make_storage(settings: SearchSettings) -> Any:
    """JournalStorage file under `out` by default; RDBStorage (heartbeat + `max_retry` retries) for an RDB URL."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    url = settings.storage
    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:") if url else Path(settings.out) / "study.journal")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = flock_lock(path.with_name(path.name + ".flock"))
            return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
        except OSError as exc:
            raise SearchError(f"error: --storage {path}: cannot open the journal ({exc.strerror or exc})") from None
    if not is_rdb(url):
        raise SearchError(
            f"error: --storage {url}: expected an RDB URL (sqlite:///file.db, "
            f"postgresql://user@host/db) or a path ending in .journal"
        )
    from sqlalchemy.exc import SQLAlchemyError

    given = mask_secrets(url)  # what messages show
    url = with_driver(with_password(url))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=settings.heartbeat_interval,
                grace_period=settings.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry),
            )
    except ImportError as exc:
        raise SearchError(
            f"error: --storage {given}: driver missing ({exc}); for PostgreSQL install scalec[postgres]"
        ) from None
    except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as exc:
        raise SearchError(f"error: --storage {given}: cannot connect ({mask_secrets(_first_line(exc))})") from None


def _first_line(exc: BaseException) -> str:
    """The driver's own message (sqlalchemy wraps it as '(driver.Error) message'), first line only."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def with_driver(url: str) -> str:
    """`postgresql://` takes SQLAlchemy's default driver (psycopg 3 in SQLAlchemy 2.1); else psycopg2."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return f"{dialect}://{rest}"
    return url


def open_study(settings: SearchSettings, worker: int = 0, sampler_seed: int | None = None) -> OpenStudy:
    """Create or load the study named by the settings (minimising final val loss); the sampler is seeded
    `sampler_seed` (default: the settings' seed + worker)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = settings.seed + worker if sampler_seed is None else sampler_seed
    sampler = make_sampler(settings.sampler, settings.dims, seed, settings.startup_trials)
    storage = make_storage(settings)
    for attempt in range(5):  # workers starting together race to create the RDB tables
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=settings.study_name(),
                sampler=sampler,
                direction="minimize",
                load_if_exists=True,
            )
        except Exception as exc:  # sqlalchemy errors from the race; one line on the last try
            if attempt == 4:
                raise SearchError(
                    mask_secrets(
                        f"error: --storage {settings.storage}: cannot open study {settings.study_name()} "
                        f"({_first_line(exc)})"
                    )
                ) from None
            time.sleep(0.5 + random.random())
            release_storage(storage)
            storage = make_storage(settings)
            continue
        check_inputs(study, settings)
        return OpenStudy(study, storage, is_rdb(settings.storage))
    raise AssertionError("unreachable")


def release_storage(storage: Any) -> None:
    """Close an RDB storage's pooled connections now; left to the garbage collector they pile up on the server
    (PostgreSQL's max_connections) when a storage is opened often, as a poll does."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def check_inputs(study: Any, settings: SearchSettings) -> None:
    """Record the input hashes the study's runs are keyed on (the first time) and refuse, in one line, to add
    trials of other inputs to it (a study named with --study whose rule or corpus has changed since)."""
    pinned = {k: settings.fixed[k] for k in INPUT_FIELDS if settings.fixed.get(k)}
    if not pinned:
        return
    held = study.user_attrs.get("inputs")
    if held == pinned:
        return
    if held is None and not study.get_trials(deepcopy=False):
        study.set_user_attr("inputs", pinned)
        return
    changed = ", ".join(INPUT_NAMES[k] for k in INPUT_FIELDS if (held or {}).get(k) != pinned.get(k))
    raise SearchError(
        f"error: study {study.study_name} holds trials of other inputs ({changed} changed, or not recorded); pass "
        "another --study or --out to search the current inputs apart from the old results"
    )
