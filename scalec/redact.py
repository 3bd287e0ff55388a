"""Passwords in URLs (`postgresql://user:PASSWORD@host/db`): masked in every message, never written to disk.

A storage URL keeps its password only in memory. Files get `without_password(url)`; a process that reads such a
file (a search worker) puts the password back with `with_password(url)` from the environment variable
`SCALEC_STORAGE_PASSWORD`, which `scalec search` sets for the workers it starts from the URL it was given.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

PASSWORD_ENV = "SCALEC_STORAGE_PASSWORD"
MASK = "***"
# scheme://user:password@host  (in a URL the password runs to the last '@' before the path)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<password>[^\s/]*)(?P<at>@)")
# in a message, to the last '@' before a space: a password with a raw '/' or '@' is masked whole (over-masking
# the host is harmless; showing half a password is not)
_TEXT_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<password>\S*)(?P<at>@)")


def mask_secrets(text: str) -> str:
    """`text` with the password of every `scheme://user:password@host` URL replaced by ***."""
    return _TEXT_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)


def password_of(url: str | None) -> str | None:
    """The (decoded) password in `url`, if it holds one."""
    m = _URL_PASSWORD.search(url or "")
    return unquote(m["password"]) if m and m["password"] else None


def without_password(url: str | None) -> str | None:
    """`url` with its password (and the ':' before it) removed: what may be written to disk."""
    if url is None:
        return None
    return _URL_PASSWORD.sub(lambda m: f"{m['head'][:-1]}{m['at']}", url)


def with_password(url: str | None, environ: dict | None = None) -> str | None:
    """`url` with the password from SCALEC_STORAGE_PASSWORD put back when it has a user but no password."""
    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_ENV)
    if url is None or not password or password_of(url) is not None:
        return url
    m = re.match(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+)@", url)
    if m is None:
        return url
    return f"{m['head']}:{quote(password, safe='')}@{url[m.end() :]}"
