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
        serve(self._server, self._serve)

    def _serve(self, conn: socket.socket) -> None:
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


class KeepAlivePeer:
    """A unix socket server that, like a kept-alive HTTP/1.1 server, reads any number of requests
    per connection (each connection served by a thread of its own). `behave(conn, n)` answers the
    n-th request (counted from 0 over all connections); when it returns False the peer closes that
    connection. Counts connections, requests, and connections the client closed."""

    def __init__(self, path: Path, behave: Callable[[socket.socket, int], bool | None]) -> None:
        self.connections = 0
        self.requests = 0
        self.closed_by_client = 0
        #: (connection number, request head) of every request, in order.
        self.heads: list[tuple[int, bytes]] = []
        #: The body of every request, in order.
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._behave = behave
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen(64)
        serve(self._server, self._accept)

    def _accept(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            number = self.connections
        threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            while True:
                try:
                    head, body = read_message(conn)
                except OSError:
                    head = b""
                if not head:
                    with self._lock:
                        self.closed_by_client += 1
                    return
                with self._lock:
                    n = self.requests
                    self.requests += 1
                    self.heads.append((number, head))
                    self.bodies.append(body)
                try:
                    if self._behave(conn, n) is False:
                        return
                except OSError:
                    return  # the client hung up: what some tests want to see

    def close(self) -> None:
        self._server.close()


def serve(server: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Hands each connection `server` accepts to `handle`, one after the other on a background
    thread, until the server socket is closed."""

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            handle(conn)

    threading.Thread(target=accept, daemon=True).start()


def http_answer(status: str, body: bytes, *headers: str) -> bytes:
    """An HTTP/1.1 answer with a Content-Length and the given extra header lines."""
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def read_request(conn: socket.socket) -> bytes:
    """Reads one HTTP/1.1 request (head and Content-Length body); returns its head."""
    return read_message(conn)[0]


def read_message(conn: socket.socket) -> tuple[bytes, bytes]:
    """Reads one HTTP/1.1 request: its head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data, b""
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
    return head, body
