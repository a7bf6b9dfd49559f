"""HTTP for drivers: the client (`client`), SSE and NDJSON framing (`framing`), options and the choice of backend
(`options`), and the backends (`backends`: the native HTTP/1.1 pool, aiohttp)."""
