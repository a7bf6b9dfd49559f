"""What llmclient shows and accepts at its edges: bounded text, redacted secrets, JSON decoded without surprises,
checked API keys and base URLs, and transport logs scrubbed of keys.

It imports nothing from llmclient, so `errors` and `http` both build on it. Its functions raise plain
`ValueError`s (or return a problem as text); the modules above turn those into llmclient errors.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

MAX_MESSAGE_CHARS = 500

_RAW_TEXT = re.compile(r"<(script|style)\b", re.IGNORECASE)
# A tag, or one cut off by the next `<` or the end; `[^<>]*` cannot run past a `<`, so stripping is linear.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*(?:>|(?=<)|\Z)")
_SPACE = re.compile(r"\s+")
# Key shapes that providers echo back; scrubbed even when the exact key is not known to the caller.
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+[A-Za-z0-9_\-.=*]{6,})")
# A password in a URL (`scheme://user:password@host`): scrubbed wherever it appears, the user name kept. The
# password runs to the last `@` before the host (libpq reads `user:p@ss@host` so), never past a `/`, `?` or `#`.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#]*:)[^\s/?#]*@")
# A password as a parameter: libpq's `?password=…` (and `sslpassword=`) in a URL's query, `password=…` or
# `password='…'` in a keyword/value connection string, `PGPASSWORD=…` in an environment dump.
_PASSWORD_PARAMETER = re.compile(r"(?i)(\b(?:pg|ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'\"#;,)]+)")
# A masked echo of a key (`tok_ABCD…QRST`, `sk-ab*****wxyz`, `...QRST`): one run of word characters around a mask.
_MASKED = re.compile(r"[\w\-]*(?:…|\.{3}|\*{3,})[\w\-]*")
# What an unset variable becomes when a config template is filled in, and the documentation's stand-ins.
_PLACEHOLDER_KEYS = frozenset({"null", "none", "nil", "undefined", "false", "true", "0", "your-api-key", "api-key"})
_LOCAL_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa")
# A URL's scheme: letters, digits, `+`, `.`, `-`, starting with a letter (RFC 3986, section 3.1).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_FORMS = {"sqlite": "sqlite:///path.db", "postgresql": "postgresql://..."}
# How a libpq keyword/value connection string starts (`host=db dbname=llm user=app password=…`).
_CONNINFO = re.compile(r"\s*(?:host|hostaddr|port|dbname|user|password|passfile|service|sslmode)\s*=", re.IGNORECASE)

E = TypeVar("E", bound=BaseException)


def bound(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Shorten `text` to at most `limit` characters, marking the cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove secrets from `text`: the given secrets exactly and as masked echoes of them (`tok_ABCD…QRST`,
    `****QRST`), common key shapes (`sk-…`, `Bearer …`), and passwords in every form libpq reads (a URL's
    `user:password@`, `?password=`, a keyword/value `password=`, `PGPASSWORD=`).

    The one redaction of the package: errors, reprs, ledger rows, logs, spans and the command line all use it.
    """
    fragments: list[str] = []
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
            if len(secret) >= 8:
                fragments += (secret[:4], secret[-4:])
    if fragments and ("…" in text or "..." in text or "***" in text):
        text = _MASKED.sub(lambda m: "[REDACTED]" if any(f in m.group() for f in fragments) else m.group(), text)
    text = _URL_PASSWORD.sub(r"\1[REDACTED]@", text)
    text = _PASSWORD_PARAMETER.sub(r"\1[REDACTED]", text)
    return _KEY_SHAPES.sub("[REDACTED]", text)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the choice closest to a misspelt `name`, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def strip_html(text: str) -> str:
    """The readable text of an HTML page, whitespace folded."""
    lowered, kept, position = text.lower(), [], 0
    while (start := _RAW_TEXT.search(text, position)) is not None:
        kept.append(text[position : start.start()])
        end = lowered.find(f"</{start.group(1).lower()}", start.end())
        if end < 0:  # unclosed: the script or style runs to the end of the page
            position = len(text)
            break
        close = text.find(">", end)
        position = len(text) if close < 0 else close + 1
    kept.append(text[position:])
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", " ".join(kept)))).strip()


def detached(error: E) -> E:
    """`error` with no cause or context. Raised inside an `except` block it would chain the low-level exception,
    which may hold a whole response body (a `JSONDecodeError`'s document) or a secret the message had redacted."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


def loads(content: bytes | str) -> Any:
    """`json.loads`, with every way decoding can fail as a `ValueError` whose message is short and holds no part
    of the input: invalid JSON or UTF-8, and nesting too deep for the decoder (`RecursionError`)."""
    try:
        return json.loads(content)
    except RecursionError:
        problem = "JSON nested too deeply to decode"
    except ValueError as exc:  # JSONDecodeError (whose .doc is the whole input) and UnicodeDecodeError
        position = getattr(exc, "pos", getattr(exc, "start", None))
        reason = getattr(exc, "msg", getattr(exc, "reason", type(exc).__name__))
        problem = f"{reason} at position {position}" if position is not None else str(reason)
    raise detached(ValueError(problem))


def api_key_problem(secret: str) -> str | None:
    """Why `secret` cannot be an API key (whitespace, control or non-ASCII characters, a placeholder such as
    "null"), or None; the answer never repeats the value."""
    if not secret.strip():
        return "is empty or whitespace"
    if not secret.isascii() or not secret.isprintable():
        return "holds non-ASCII or control characters (CR, LF, …)"
    if any(character.isspace() for character in secret):
        return "holds whitespace"
    if secret.lower() in _PLACEHOLDER_KEYS:
        return f"is the placeholder {secret!r}"
    return None


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be a base URL (whitespace, an invalid port), or None."""
    if any(character.isspace() for character in url):
        return f"contains whitespace: {url.strip()!r}"
    try:
        urlsplit(url).port  # noqa: B018 - urllib checks the port only when it is read
    except ValueError:
        return "has an invalid port"
    return None


def split_location(location: str, schemes: Iterable[str]) -> tuple[str | None, str]:
    """Where a store lives, as (scheme, what follows): `("postgresql", url)` for `postgresql://…` (or
    `postgres://…`, or a libpq keyword/value string `host=… dbname=…`), `("sqlite", path)` for `sqlite:///path`,
    `(None, location)` for a plain path.

    Raises a `ValueError` that names the scheme alone (the rest may hold a password) when the scheme is not one of
    `schemes` (`mysql://`, a typo such as `postgresq://`) or is malformed (`postgresql:/x`, `sqlite://x`). A
    one-letter scheme is a Windows drive (`C:\\ledger.db`), so a path.
    """
    match = _SCHEME.match(location)
    if match is None or len(match.group(1)) == 1:
        if _CONNINFO.match(location):  # `host=db dbname=llm password=…`: PostgreSQL, never a file of that name
            if "postgresql" not in tuple(schemes):
                raise ValueError("a PostgreSQL connection string is not supported here")
            return "postgresql", location
        return None, location
    scheme, allowed = match.group(1).lower(), tuple(schemes)
    family = "postgresql" if scheme in ("postgresql", "postgres") else scheme
    if family not in allowed:
        choices = " or ".join(_FORMS.get(name, f"{name}://...") for name in allowed) or "a path"
        raise ValueError(f"the scheme {scheme!r} is not supported here; use {choices}")
    rest = location[match.end() :]
    if family == "postgresql":
        if not rest.startswith("//"):
            raise ValueError(f"a {scheme} URL must start with {scheme}://")
        return family, location
    if family == "sqlite":
        if not rest.startswith("///"):
            raise ValueError("a sqlite URL must start with sqlite:/// (then a path: sqlite:///ledger.db)")
        return family, rest[3:]
    return family, location


def is_public_host(host: str) -> bool:
    """Whether `host` is outside this machine and its local network (a dotted public name or a global address);
    a one-label name (`gpu-box`) or a local suffix (`.local`, `.internal`, `.lan`) counts as local."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "." in host and not host.endswith(_LOCAL_SUFFIXES)
    return address.is_global


class RedactingFilter(logging.Filter):
    """Scrubs registered secrets (and key shapes) from the records of the loggers it is added to."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()  # the API keys and passwords configured in this process: one entry each

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's to report, not ours
            return True
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


TRANSPORT_LOGS = RedactingFilter()
# The loggers httpx and httpcore write to (a filter applies only to records made on its own logger).
_TRANSPORT_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy")


def scrub_transport_logs(secrets: Iterable[str]) -> None:
    """Keep `secrets` out of httpx's and httpcore's log records (DEBUG logs headers a server may echo keys in)."""
    scrub_logs(_TRANSPORT_LOGGERS, secrets)


def scrub_logs(names: Iterable[str], secrets: Iterable[str]) -> None:
    """Keep `secrets` (and passwords in any form, key shapes) out of the records of the loggers named, e.g.
    psycopg's, whose connection errors quote the server's words."""
    TRANSPORT_LOGS.secrets.update(secrets)
    for name in names:
        logger = logging.getLogger(name)
        if TRANSPORT_LOGS not in logger.filters:
            logger.addFilter(TRANSPORT_LOGS)
