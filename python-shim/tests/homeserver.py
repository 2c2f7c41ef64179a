"""A real Synapse (from PyPI) on loopback with SQLite, started and stopped by the tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import homeserver_config
from helpers import daemon_binary
from matrix_client import Client


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


def stop(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()


class Daemon:
    """The verifier daemon, socket-activated by systemd-socket-activate on a unix socket and,
    when `tcp` is set, also on a TCP port of 127.0.0.1."""

    def __init__(self, directory: Path, config_toml: str, tcp: bool = False) -> None:
        self.dir = directory
        self.socket = directory / "verify.sock"
        self.url = f"http://127.0.0.1:{free_port()}" if tcp else None
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
                    *(["-l", self.url.removeprefix("http://")] if self.url else []),
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
        stop(self.process, 10)


class SynapseProcess:
    """One Synapse process (`python -m <app> <args>`) whose client listener is 127.0.0.1:`port`,
    logging to `log`; with `metrics_port`, its Prometheus listener. `pythonpath` lets Synapse
    import further modules (a spam checker) from there."""

    def __init__(
        self,
        directory: Path,
        name: str,
        port: int,
        args: list[str],
        log: Path,
        pythonpath: Path | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.dir = directory
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.args = args
        self.log = log
        self.out = directory / ("stdout.log" if name == "homeserver" else f"{name}.stdout.log")
        self.pythonpath = pythonpath
        self.metrics_port = metrics_port
        self.process: subprocess.Popen | None = None
        self.client = Client(self.base)

    def launch(self) -> None:
        """Starts the process without waiting for it (see `wait_up`)."""
        env = None
        if self.pythonpath is not None:
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(self.pythonpath), os.environ.get("PYTHONPATH")])),
            }
        with open(self.out, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.args],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
            )

    def wait_up(self, timeout: float = 60) -> None:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"Synapse ({self.name}) exited during start-up:\n"
                    + self.out.read_text()[-3000:]
                    + self.log_text()[-3000:]
                )
            try:
                return self.request("GET", "/_matrix/client/versions")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout, f"Synapse ({self.name}) to answer /versions")

    def start(self) -> None:
        self.launch()
        self.wait_up()

    def stop(self) -> None:
        stop(self.process, 20)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def request(self, method: str, path: str, body: Any = None, access_token: str | None = None) -> tuple[int, Any]:
        return self.client.request(method, path, body, access_token)

    def login(self, user: str, token: str | None) -> tuple[int, Any]:
        return self.client.login(user, token)

    def metrics(self) -> str:
        """The text of the metrics listener (Prometheus exposition format)."""
        assert self.metrics_port is not None, "started without a metrics listener"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            return resp.read().decode()


class Homeserver(SynapseProcess):
    """The main process (`synapse.app.homeserver`). `extra` adds or overrides top-level settings
    of homeserver.yaml; `listeners` come after the client listener; `metrics` adds a metrics
    listener (and `enable_metrics`)."""

    def __init__(
        self,
        directory: Path,
        module_config: dict[str, Any],
        extra: dict[str, Any] | None = None,
        pythonpath: Path | None = None,
        listeners: tuple[dict[str, Any], ...] = (),
        metrics: bool = False,
    ) -> None:
        port = free_port()
        metrics_port = free_port() if metrics else None
        if metrics_port is not None:
            extra = {"enable_metrics": True, **(extra or {})}
            listeners = (*listeners, {"port": metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"})
        config = homeserver_config.write(directory, port, module_config, extra=extra, listeners=listeners)
        super().__init__(
            directory,
            "homeserver",
            port,
            ["synapse.app.homeserver", "-c", str(config)],
            directory / "homeserver.log",
            pythonpath,
            metrics_port,
        )
        self.config = config
        self.shared_secret = json.loads(config.read_text())["registration_shared_secret"]

    def register_with_shared_secret(self, localpart: str, admin: bool) -> str:
        """Creates a user the way `register_new_matrix_user` does; returns its access token."""
        return self.client.register(self.shared_secret, localpart, admin)["access_token"]
