"""The driver toolkit's transport half: what a driver that talks HTTP needs, public and typed.

- `HTTPClient`: one provider's connection pool. JSON requests (`post_json`, `get_json`), streamed answers as lines
  (`stream_lines`), server-sent events (`stream_sse`) or NDJSON (`stream_ndjson`); errors already translated into
  the `llmclient.errors` tree (with the provider's own error names, `error_codes=`); the key redacted everywhere;
  what it reads bounded by `Limits`; the answer's rate-limit headers collected (`RATE_LIMIT_PREFIXES`).
- `Timeouts`, `HTTPOptions`, `Limits`: what the user configures per provider, passed to the driver as they are.
- `iter_sse`, `iter_lines`, `iter_ndjson`: the framing of streamed bodies, for a driver that reads its own.
- `validate_base_url`: the check a driver's `base_url=` option goes through.

A driver whose `Capabilities.http` is true is built with the client's `transport=` and `timeouts=`; it hands them,
with its own headers and the user's `http=` and `limits=` options, to one `HTTPClient`:

```python
from llmclient.http import HTTPClient, Timeouts

http = HTTPClient(
    provider="acme",
    base_url="https://api.acme.example/v1",
    headers={"authorization": "Bearer sk-acme-123456"},
    secrets=["sk-acme-123456"],  # never shown in an error message
    timeouts=Timeouts(connect=5.0, read=60.0),
)
assert http.timeouts.read == 60.0
await http.aclose()
```
"""

from llmclient.http.client import RATE_LIMIT_PREFIXES, HTTPClient, Transport
from llmclient.http.framing import iter_lines, iter_ndjson, iter_sse
from llmclient.http.options import HTTPOptions, InsecureURLWarning, Limits, Timeouts, validate_base_url

__all__ = [
    "RATE_LIMIT_PREFIXES",
    "HTTPClient",
    "HTTPOptions",
    "InsecureURLWarning",
    "Limits",
    "Timeouts",
    "Transport",
    "iter_lines",
    "iter_ndjson",
    "iter_sse",
    "validate_base_url",
]
