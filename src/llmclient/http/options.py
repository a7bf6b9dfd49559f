"""How an HTTP driver connects (`HTTPOptions`), how long it waits (`Timeouts`), what it reads at most (`Limits`), and
the checks on its key and URL.

Every backend of `llmclient.http.client.HTTPClient` reads these, so a proxy, a CA bundle or a connection limit means the
same over the native backend, aiohttp and httpx. Nothing here imports any of them.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from llmclient._sanitize import api_key_problem, base_url_problem, is_public_host
from llmclient.errors import ConfigurationError, MissingExtraError
from llmclient.http.framing import DEFAULT_MAX_EVENT_BYTES

if TYPE_CHECKING:
    import ssl

    from llmclient.http.backends.aiohttp_backend import AiohttpBackend
    from llmclient.http.backends.native import H1Backend
    from llmclient.http.client import HTTPClient


@dataclass(frozen=True)
class Timeouts:
    """Timeouts for one call.

    Args:
        connect: Seconds to open a connection (TCP and TLS).
        read: Seconds between two reads of the answer (a stream that goes quiet this long fails).
        total: The call's overall deadline in seconds, retries and stream included; None for none. It is what
            stops a server that keeps a connection alive by dripping bytes.
        write: Seconds to send the request body; None means as long as `read`. The aiohttp backend has no write
            timeout of its own: it reads while it writes, so a peer that stops reading the body is caught by `read`.
        pool: Seconds to wait for a free connection when `HTTPOptions.max_connections` are all busy; None means as
            long as `read`. With aiohttp it bounds the wait and the opening of a new connection together.
    """

    connect: float = 10.0
    # As long as the whole call: a non-streamed reply from a reasoning model or a CPU-bound local server can take
    # minutes before its first byte. A stream that keeps a connection alive by dripping bytes is stopped by `total`.
    read: float = 600.0
    total: float | None = 600.0
    write: float | None = None
    pool: float | None = None

    @classmethod
    def from_value(cls, value: float | Timeouts | None) -> Timeouts:
        """A float is the overall deadline (connect and read timeouts capped by it); None means no deadline."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(total=None)
        return cls(connect=min(cls.connect, value), read=value, total=value)


@dataclass(frozen=True)
class HTTPOptions:
    """How an HTTP driver connects: proxy, environment, TLS verification, connection pool and backend.

    Given per provider, as an `HTTPOptions` or a dict of its fields (the config file's form):
    `Client(providers={"openai": {"http": HTTPOptions(proxy="http://proxy:3128")}})`.

    Args:
        proxy: An `http://` proxy URL for every request; None to take it from the environment (see `trust_env`).
        trust_env: Read `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (when `proxy` is None), and
            `SSL_CERT_FILE` / `SSL_CERT_DIR` (when `verify` is True), once, when the driver is built.
        verify: True checks TLS certificates against certifi's bundle (or `SSL_CERT_FILE`/`SSL_CERT_DIR`); a path
            names a CA bundle file or directory; an `ssl.SSLContext` is used as it is; False turns checking off.
        max_connections: The most connections open at once to the provider (calls beyond wait for one, in the
            order they came, up to `Timeouts.pool`); None for no limit.
        max_idle_connections: The most idle connections kept for the next calls (never more than
            `max_connections`); those beyond close when their call ends. httpx keeps at most 20.
        keepalive_expiry: Seconds an idle connection is kept for the next call, after which it is closed (a
            server counts idle connections against its own limit); 0 closes every connection after its call.
        backend: "native" (the default and the fastest: llmclient's own HTTP/1.1 keep-alive pool, which hands a
            proxied client to aiohttp when the `aiohttp` extra is installed, else to httpx), "aiohttp" or "httpx".
            A `transport=` is an httpx transport, so giving one selects httpx.
    """

    proxy: str | None = None
    trust_env: bool = True
    verify: bool | str | os.PathLike[str] | ssl.SSLContext = True
    max_connections: int | None = 100
    max_idle_connections: int = 100
    keepalive_expiry: float = 5.0
    backend: Literal["native", "aiohttp", "httpx"] = "native"

    def __post_init__(self) -> None:
        if self.backend not in ("native", "aiohttp", "httpx"):
            raise ValueError(f"backend must be 'native', 'aiohttp' or 'httpx', not {self.backend!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be at least 1 (or None for no limit)")
        if self.max_idle_connections < 0:
            raise ValueError("max_idle_connections must not be negative")
        if self.keepalive_expiry < 0:
            raise ValueError("keepalive_expiry must not be negative")

    @classmethod
    def from_value(cls, value: HTTPOptions | Mapping[str, Any] | None) -> HTTPOptions:
        """`HTTPOptions` as given, from a dict of its fields, or the defaults for None."""
        if value is None:
            return _DEFAULT_OPTIONS
        if isinstance(value, HTTPOptions):
            return value
        unknown = set(value) - {field.name for field in fields(cls)}
        if unknown:
            raise ValueError(f"unknown HTTP option(s): {', '.join(sorted(unknown))}")
        return cls(**value)

    def proxy_for(self, url: str) -> str | None:
        """The proxy for requests to `url`: `proxy`, else the environment's unless `NO_PROXY` exempts the host."""
        if self.proxy is not None or not self.trust_env:
            return self.proxy
        proxies = _environment_proxies()
        parts = urlsplit(url)
        if not proxies or _bypassed(parts.hostname or "", proxies.get("no", "")):
            return None
        return proxies.get(parts.scheme) or proxies.get("all")

    def ssl_context(self) -> ssl.SSLContext | Literal[False]:
        """The TLS context both backends verify with (False when checking is off)."""
        import ssl

        verify = self.verify
        if verify is False:
            return False
        if isinstance(verify, ssl.SSLContext):
            return verify
        if verify is True:
            if self.trust_env and os.environ.get("SSL_CERT_FILE"):
                return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
            if self.trust_env and os.environ.get("SSL_CERT_DIR"):
                return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
            import certifi  # httpx's bundle, so both backends trust the same authorities

            return ssl.create_default_context(cafile=certifi.where())
        path = os.fspath(verify)
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)


_DEFAULT_OPTIONS = HTTPOptions()


def _environment_proxies() -> dict[str, str]:
    """The `*_proxy` variables by scheme, as `urllib.request.getproxies_environment` reads them (a lower-case name
    wins over its upper-case twin, an empty one removes it; under CGI, `HTTP_PROXY` is a request header and is
    ignored) without importing urllib.request and http.client on every driver's first use."""
    environ = os.environ
    proxies = {name.lower()[:-6]: value for name, value in environ.items() if value and name.lower()[-6:] == "_proxy"}
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name[-6:] == "_proxy":  # lower case, applied last
            if value:
                proxies[name[:-6]] = value
            else:
                proxies.pop(name[:-6], None)
    return proxies


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether `NO_PROXY` exempts `host`: `*`, the host itself, or a domain it is in (`.example.com`, `example.com`,
    `*.example.com`); a port in an entry is not checked."""
    host = host.lower().strip("[]").rstrip(".")
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        if entry.startswith("["):  # [v6] or [v6]:port
            entry = entry[1:].partition("]")[0]
        elif entry.count(":") == 1:  # host:port
            entry = entry.partition(":")[0]
        entry = entry.lstrip("*").strip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def finite_seconds(value: float | None) -> float | None:
    """A timeout for the native and aiohttp backends: None for "no limit" (math.inf would overflow timer
    rounding)."""
    return None if value is None or math.isinf(value) else value


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer from the native or aiohttp backend, shaped like the parts of `httpx.Response` that
    `HTTPClient` reads (look headers up by lower-case name)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def fast_backend(owner: HTTPClient) -> H1Backend | AiohttpBackend | None:
    """The backend of a client without an httpx transport: the native one unless a proxy applies, then aiohttp when
    installed (the `aiohttp` extra) and httpx otherwise; aiohttp or httpx when asked for by name (None for httpx).

    Raises:
        MissingExtraError: `backend="aiohttp"` without aiohttp installed.
    """
    options = owner.options
    if options.backend == "httpx":
        return None
    if options.backend == "native" and options.proxy_for(owner.base_url) is None:
        try:
            from llmclient.http.backends.native import H1Backend
        except ImportError:  # httptools has no wheel for this platform: aiohttp serves
            pass
        else:
            return H1Backend(owner)
    try:
        from llmclient.http.backends.aiohttp_backend import AiohttpBackend
    except ImportError as exc:  # aiohttp is an extra: httpx serves a proxy just as well, for more CPU per call
        if options.backend == "aiohttp":
            raise MissingExtraError(
                "HTTPOptions(backend='aiohttp') needs aiohttp: pip install 'llmclient[aiohttp]'"
            ) from exc
        return None
    return AiohttpBackend(owner)


def httpx_mocked() -> bool:
    """Whether a test library replaced httpx's network layer (respx patches httpcore's connection pool, pytest-httpx
    httpx's transport), so requests must go through httpx for its routes to see them. Asked per request, from the
    public methods themselves: nothing when httpx was never imported."""
    # getattr: another thread may be importing either module (its classes not defined yet, so not patched yet).
    transport = getattr(sys.modules.get("httpx"), "AsyncHTTPTransport", None)
    pool = getattr(sys.modules.get("httpcore"), "AsyncConnectionPool", None)
    if transport is None or pool is None:
        return False
    sends = (transport.handle_async_request, pool.handle_async_request)
    return not (sends[0].__module__.startswith("httpx") and sends[1].__module__.startswith("httpcore"))


@dataclass(frozen=True)
class Limits:
    """The most llmclient reads from a provider, so a hostile or broken server cannot exhaust memory.

    Raise them per provider: `Client(providers={"openai": {"limits": Limits(max_response_bytes=256 * 2**20)}})`.

    Args:
        max_response_bytes: One response body (a chat completion, a batch of embeddings, an error page). Past it:
            `ResponseFormatError` (recorded in the ledger when the status was 2xx: the call was billed).
        max_event_bytes: One line or server-sent event of a stream. Past it: `StreamDecodeError`.
    """

    max_response_bytes: int = 64 * 2**20
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES


class InsecureURLWarning(UserWarning):
    """An API key would be sent over plain http to a host outside this machine and its local network."""


_WARNED_HOSTS: set[str] = set()


def check_api_key(secret: str, *, provider: str) -> str:
    """`secret` if it can be an API key, else `ConfigurationError` (which never shows the value)."""
    problem = api_key_problem(secret)
    if problem:
        raise ConfigurationError(f"the API key for {provider} {problem}; check what sets it", provider=provider)
    return secret


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_headers(headers: Mapping[str, str], *, provider: str) -> dict[str, str]:
    """`headers` as a dict if every name is an HTTP token and every value one line of Latin-1 text, else
    `ConfigurationError` naming the header (never its value: it may hold a secret). A CR or LF would let a value
    add headers of its own."""
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN:
            raise ConfigurationError(
                f"header name {str(name)[:60]!r} for {provider} is not an HTTP token", provider=provider
            )
        if not isinstance(value, str) or not value.replace("\t", " ").isprintable():  # no CR, LF or NUL
            message = f"the {name!r} header for {provider} must be one line of printable text"
            raise ConfigurationError(message, provider=provider)
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            message = f"the {name!r} header for {provider} holds non-Latin-1 text"
            raise ConfigurationError(message, provider=provider) from None
    return dict(headers)


def check_base_url(url: str, *, provider: str, sends_key: bool) -> None:
    """Refuse a base URL with whitespace or an invalid port (`ConfigurationError`); warn once per host when a key
    would go over plain http to a public host."""
    problem = base_url_problem(url)
    if problem:
        raise ConfigurationError(f"base_url for {provider} {problem}", provider=provider)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and sends_key and is_public_host(host) and host not in _WARNED_HOSTS:
        _WARNED_HOSTS.add(host)
        warnings.warn(
            f"the {provider} API key goes over plain http to {host}; use https:// unless the network is trusted",
            InsecureURLWarning,
            stacklevel=4,
        )


def validate_base_url(url: str, *, provider: str) -> str:
    """A base URL must be http(s) with a host and carry no credentials, query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url for {provider} must be an http(s) URL with a host", provider=provider)
    if parts.username or parts.password:
        raise ConfigurationError(
            f"base_url for {provider} must not carry credentials; pass api_key= instead", provider=provider
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"base_url for {provider} must not have a query or fragment", provider=provider)
    return url.rstrip("/")
