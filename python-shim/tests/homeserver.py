"""A real Synapse (from PyPI) on loopback with SQLite, started and stopped by the tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from helpers import SERVER_NAME, daemon_binary

SHARED_SECRET = "test-only-registration-secret"


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
                    "systemd-socket-activate", "-l", str(self.socket),
                    f"--setenv=SYNAPSE_TOKEN_AUTH_CONFIG={self.config}",
                    daemon_binary(), "serve",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
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
    def __init__(self, directory: Path, module_config: dict[str, Any], module: str = "synapse_token_auth.TokenAuthenticator") -> None:
        self.dir = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = directory / "homeserver.log"
        self.process: subprocess.Popen | None = None
        self._write_config(module, module_config)

    def _write_config(self, module: str, module_config: dict[str, Any]) -> None:
        from signedjson.key import generate_signing_key, write_signing_keys

        d = self.dir
        with open(d / "signing.key", "w") as f:
            write_signing_keys(f, [generate_signing_key("a")])
        (d / "log.yaml").write_text(json.dumps({
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise", "filename": str(self.log)}},
            "root": {"level": "WARNING", "handlers": ["file"]},
            "loggers": {"synapse_token_auth": {"level": "INFO"}, "synapse.module_api": {"level": "INFO"}},
            "disable_existing_loggers": False,
        }))
        relaxed = {"per_second": 10000, "burst_count": 100000}
        config = {
            "server_name": SERVER_NAME,
            "pid_file": str(d / "homeserver.pid"),
            "listeners": [{
                "port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}],
            }],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(d / "log.yaml"),
            "media_store_path": str(d / "media"),
            "signing_key_path": str(d / "signing.key"),
            "macaroon_secret_key": "test-only",
            "form_secret": "test-only",
            "registration_shared_secret": SHARED_SECRET,
            "report_stats": False,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "rc_login": {"address": relaxed, "account": relaxed, "failed_attempts": relaxed},
            "rc_registration": relaxed,
            "rc_message": relaxed,
            "rc_admin_redaction": relaxed,
            "modules": [{"module": module, "config": module_config}],
        }
        # JSON is YAML: no YAML writer needed.
        (d / "homeserver.yaml").write_text(json.dumps(config, indent=1))

    def start(self) -> None:
        with open(self.dir / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.dir / "homeserver.yaml")],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    "Synapse exited during start-up:\n" + (self.dir / "stdout.log").read_text()[-3000:]
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
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce["nonce"].encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        status, body = self.request("POST", "/_synapse/admin/v1/register", {
            "nonce": nonce["nonce"], "username": localpart, "password": password,
            "admin": admin, "mac": mac.hexdigest(),
        })
        assert status == 200, body
        return body["access_token"]
