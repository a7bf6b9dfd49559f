"""The HTTP backends behind `llmclient.http.client.HTTPClient`: the native HTTP/1.1 pool and aiohttp."""
