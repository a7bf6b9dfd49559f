"""The few web pages a suite downloads, served from loopback: an HTTPS proxy that answers them itself.

LangChain's integration suite fetches an image from raw.githubusercontent.com with `httpx.get` (its image tests);
tests run offline. Pointed at by `HTTPS_PROXY`, this proxy accepts `CONNECT` for the hosts it serves only, ends TLS
itself with a certificate from a throwaway CA (trustme; `SSL_CERT_FILE` names that CA), and answers each path it
was given. Any other host is refused with 403, so a download nobody planned for fails loudly instead of reaching out.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import struct
import threading
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme


def png(width: int = 16, height: int = 16) -> bytes:
    """A real PNG (an RGB gradient), made here rather than downloaded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def row(y: int) -> bytes:  # filter byte 0, then RGB pixels
        return b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))

    rows = b"".join(row(y) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def pdf() -> bytes:
    """A real one-page PDF with one line of text (PDF 1.4, a cross-reference table with exact offsets)."""
    stream = b"BT /F1 24 Tf 72 720 Td (Dummy PDF file) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A real WAV file: `seconds` of 16-bit mono silence."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


class LoopbackWeb:
    """Serves `pages` (`{"https://host/path": (content_type, body)}`) through an HTTPS proxy on 127.0.0.1.

    Use it in a `with` block; `environment(folder)` gives the variables that route `httpx` (and anything else that
    honours them) through it.
    """

    def __init__(self, pages: dict[str, tuple[str, bytes]]) -> None:
        self.pages = {(urlsplit(url).hostname or "", urlsplit(url).path): page for url, page in pages.items()}
        self.ca = trustme.CA()
        self.requests: list[str] = []
        self._contexts: dict[str, ssl.SSLContext] = {}
        for host in {host for host, _ in self.pages}:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(host).configure_cert(context)
            self._contexts[host] = context
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-web", daemon=True)
        self.proxy_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LoopbackWeb:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def environment(self, folder: Path) -> dict[str, str]:
        """`HTTPS_PROXY`, `SSL_CERT_FILE` (the throwaway CA, written into `folder`) and `NO_PROXY` for loopback."""
        ca_file = folder / "loopback-web-ca.pem"
        self.ca.cert_pem.write_to_path(str(ca_file))
        return {"HTTPS_PROXY": self.proxy_url, "SSL_CERT_FILE": str(ca_file), "NO_PROXY": "127.0.0.1,localhost"}

    def serve(self, connection: socket.socket) -> None:
        """One proxy connection: `CONNECT host:443`, then HTTP/1.1 requests inside TLS."""
        head = _read_head(connection)
        method, target, _ = head[0].split(" ", 2)
        host = target.rsplit(":", 1)[0]
        if method != "CONNECT" or host not in self._contexts:
            self.requests.append(f"refused {method} {target}")
            connection.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            return
        connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with self._contexts[host].wrap_socket(connection, server_side=True) as tls:
            request = _read_head(tls)
            path = request[0].split(" ", 2)[1].split("?", 1)[0]
            self.requests.append(f"GET https://{host}{path}")
            found = self.pages.get((host, path))
            status, content_type, body = ("200 OK", *found) if found else ("404 Not Found", "text/plain", b"not here")
            headers = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            tls.sendall((headers + "connection: close\r\n\r\n").encode() + body)


def _read_head(connection: Any) -> list[str]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = connection.recv(65536)
        if not piece:
            break
        data += piece
    return data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")


def _handler(web: LoopbackWeb) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError, ValueError, IndexError):  # a client that went away: it sees its error
                web.serve(self.request)

    return Handler
