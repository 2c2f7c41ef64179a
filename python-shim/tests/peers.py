"""Small socket servers that play the verifier daemon's part in tests, for what the real daemon
never does (answers without end, no answer, a victim's verdict to every request)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path


class Peer:
    """A unix socket server that reads one request per connection and answers with `behave`."""

    def __init__(self, path: Path, behave: Callable[[socket.socket], None]) -> None:
        self.sent = 0
        self.served = 0
        self._behave = behave
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                read_request(conn)
                self.served += 1
                try:
                    self._behave(conn)
                except OSError:
                    pass  # the client hung up: what these tests want to see

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._server.close()


def read_request(conn: socket.socket) -> bytes:
    """Reads one HTTP/1.1 request (head and Content-Length body); returns its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head
