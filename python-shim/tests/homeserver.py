"""A real Synapse (from PyPI) on loopback with SQLite, started and stopped by the tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from helpers import REPO, daemon_binary

# The same homeserver.yaml as `make demo` (examples/homeserver_config.py).
sys.path.insert(0, str(REPO / "examples"))
import homeserver_config  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Daemon:
    """The verifier daemon, socket-activated by systemd-socket-activate on a unix socket."""

    def __init__(self, directory: Path, config_toml: str) -> None:
        self.dir = directory
        self.socket = directory / "verify.sock"
        self.config = directory / "daemon.toml"
        self.config.write_text(config_toml)
        self.log = directory / "daemon.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    "systemd-socket-activate",
                    "-l",
                    str(self.socket),
                    f"--setenv=SYNAPSE_TOKEN_AUTH_CONFIG={self.config}",
                    daemon_binary(),
                    "serve",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_until(self.socket.exists, 10, "the daemon's socket")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Homeserver:
    def __init__(self, directory: Path, module_config: dict[str, Any]) -> None:
        self.dir = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = directory / "homeserver.log"
        self.process: subprocess.Popen | None = None
        self.config = homeserver_config.write(directory, self.port, module_config)
        self.shared_secret = json.loads(self.config.read_text())["registration_shared_secret"]

    def start(self) -> None:
        with open(self.dir / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config)],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    "Synapse exited during start-up:\n"
                    + (self.dir / "stdout.log").read_text()[-3000:]
                    + self.log_text()[-3000:]
                )
            try:
                return self.request("GET", "/_matrix/client/versions")[0] == 200
            except OSError:
                return False

        wait_until(up, 60, "Synapse to answer /versions")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def request(self, method: str, path: str, body: Any = None, access_token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if access_token:
            req.add_header("Authorization", f"Bearer {access_token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                return e.code, json.loads(payload)
            except ValueError:
                return e.code, payload.decode(errors="replace")

    def login(self, user: str, token: str | None) -> tuple[int, Any]:
        body: dict[str, Any] = {"type": "com.famedly.login.token", "identifier": {"type": "m.id.user", "user": user}}
        if token is not None:
            body["token"] = token
        return self.request("POST", "/_matrix/client/v3/login", body)

    def register_with_shared_secret(self, localpart: str, admin: bool) -> str:
        """Creates a user the way `register_new_matrix_user` does; returns its access token."""
        status, nonce = self.request("GET", "/_synapse/admin/v1/register")
        assert status == 200, nonce
        password = "test-only-password"
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [nonce["nonce"].encode(), localpart.encode(), password.encode(), b"admin" if admin else b"notadmin"]
            )
        )
        status, body = self.request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce["nonce"],
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        assert status == 200, body
        return body["access_token"]
