"""A real HTTP proxy in front of the local hub, for the bot tests: it records what the bot asks and can fail
chosen requests the way the Hub fails them."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultProxy:
    """A real HTTP proxy in front of the hub that records every request and answers chosen ones with an error first.

    `faults`: (method, path fragment, status, Retry-After, forward) tuples, each used once; with `forward`
    the request reaches the hub and only the answer is replaced (the work is done, the client sees 5xx).
    """

    def __init__(self, target: str, faults: list[tuple[str, str, int, str | None, bool]]) -> None:
        self.target = urlsplit(target)
        self.faults = list(faults)
        self.injected: list[tuple[str, str, int]] = []
        self.requests: list[tuple[str, str]] = []  # every request, as (method, raw path with query)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, method: str, path: str):
        with self._lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault[0] == method and fault[1] in path:
                    self.faults.remove(fault)
                    self.injected.append((method, path, fault[2]))
                    return fault
        return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().strip(), 16)):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(key, value)
                length = dict((k.lower(), v) for k, v in headers).get("content-length", str(len(data)))
                self.send_header("Content-Length", length if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body()
                fault = proxy.take(self.command, self.path)
                if fault is not None and not fault[4]:
                    return self._answer(fault[2], [("Retry-After", fault[3])] if fault[3] else [], b"{}")
                upstream = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "transfer-encoding", "content-length")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                if fault is not None:
                    return self._answer(fault[2], [], b"{}")
                self._answer(response.status, response.getheaders(), data)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
