"""Synapse with workers, as deployments scale it: PostgreSQL, Redis, the main process and two
generic workers serving `/login`, all started and stopped by the tests (no systemd, no root
services: PostgreSQL and Redis on unix sockets in temporary directories).

PostgreSQL's server programs, redis-server and psycopg2 are required: without them the tests
fail, they do not skip (`.ci/run` installs the first two, `run-tests.sh` the third)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from homeserver import Homeserver, SynapseProcess, free_port, stop, wait_until


def _postgres_bindir() -> Path:
    """Debian's /usr/lib/postgresql/<version>/bin (the newest), else `initdb` on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise AssertionError("PostgreSQL's server programs (initdb, postgres) are required: apt-get install postgresql")
    return Path(initdb).parent


def _psycopg2() -> Any:
    try:
        import psycopg2
    except ImportError as e:
        raise AssertionError("psycopg2 is required (pip install psycopg2-binary)") from e
    return psycopg2


class Postgres:
    """A throwaway cluster: initdb into a temporary directory, unix socket only, no fsync.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (which
    Debian's package creates)."""

    USER = "synapse_user"

    def __init__(self) -> None:
        self.bindir = _postgres_bindir()
        self.psycopg2 = _psycopg2()
        self.dir = Path(tempfile.mkdtemp(prefix="sta-postgres-"))
        self.dir.chmod(0o755)  # the postgres user must reach data/ and run/
        self.data = self.dir / "data"
        self.run = self.dir / "run"  # the socket
        self.log = self.dir / "postgres.log"
        self._as = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        for d, mode in ((self.data, 0o700), (self.run, 0o755)):
            d.mkdir(mode=mode)
            if self._as:
                shutil.chown(d, "postgres", "postgres")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        initdb = subprocess.run(
            [self.bindir / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]
            + ["--no-sync"],
            cwd=self.dir,
            capture_output=True,
            text=True,
            **self._as,
        )
        assert initdb.returncode == 0, f"initdb failed:\n{initdb.stdout}{initdb.stderr}"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.bindir / "postgres", "-D", self.data, "-k", self.run, "-c", "listen_addresses="]
                + ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                **self._as,
            )

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError("PostgreSQL exited during start-up:\n" + self.log.read_text()[-3000:])
            try:
                self.connect("postgres").close()
            except self.psycopg2.OperationalError:
                return False
            return True

        wait_until(up, 30, "PostgreSQL to accept connections")
        self.execute("postgres", f"CREATE USER {self.USER}")

    def connect(self, database: str) -> Any:
        connection = self.psycopg2.connect(host=str(self.run), user="postgres", dbname=database)
        connection.autocommit = True
        return connection

    def execute(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def create_database(self, name: str) -> dict[str, Any]:
        """A new, empty database for one Synapse; returns its `database` setting."""
        assert re.fullmatch(r"[a-z_]+", name), name
        # Synapse refuses a collation other than C.
        self.execute(
            "postgres", f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
        self.execute("postgres", f"ALTER DATABASE {name} OWNER TO {self.USER}")
        args = {"host": str(self.run), "user": self.USER, "database": name, "cp_min": 1, "cp_max": 5}
        return {"name": "psycopg2", "args": args}

    def stop(self) -> None:
        """SIGINT: PostgreSQL's fast shutdown (open transactions are rolled back)."""
        try:
            if self.process and self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """redis-server on a unix socket, without persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is required: apt-get install redis-server")
        self.binary = binary
        self.socket = directory / "redis.sock"
        self.log = directory / "redis.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
            + ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError("redis-server exited during start-up:\n" + self.log.read_text()[-3000:])
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until(up, 10, "Redis to answer PING")

    def stop(self) -> None:
        stop(self.process, 10)


class Worker(SynapseProcess):
    """A generic worker with a client and a metrics listener; it reads the main process's
    homeserver.yaml and a file of its own."""

    def __init__(self, main: Homeserver, name: str) -> None:
        directory = main.dir
        port, metrics_port = free_port(), free_port()
        log_config = json.loads((directory / "log.yaml").read_text())
        log_config["handlers"]["file"]["filename"] = str(directory / f"{name}.log")
        (directory / f"log.{name}.yaml").write_text(json.dumps(log_config, indent=1))
        config = {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": name,
            # A worker ignores log_config and takes only this.
            "worker_log_config": str(directory / f"log.{name}.yaml"),
            "worker_listeners": [
                {
                    "type": "http",
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                },
                {"type": "metrics", "port": metrics_port, "bind_addresses": ["127.0.0.1"]},
            ],
        }
        path = directory / f"{name}.yaml"
        path.write_text(json.dumps(config, indent=1))
        args = ["synapse.app.generic_worker", "-c", str(main.config), "-c", str(path)]
        super().__init__(directory, name, port, args, directory / f"{name}.log", metrics_port=metrics_port)


class Cluster:
    """Redis, the main process and worker1, worker2 on a database of `postgres`, each process
    with the module configured by `module_config` and a metrics listener."""

    def __init__(self, directory: Path, postgres: Postgres, database: str, module_config: dict[str, Any]) -> None:
        self.postgres = postgres
        self.database = database
        self.redis = Redis(directory)
        replication = free_port()
        shared = {
            "database": postgres.create_database(database),
            "redis": {"enabled": True, "path": str(self.redis.socket)},
            "worker_replication_secret": "test-only",
            "instance_map": {"main": {"host": "127.0.0.1", "port": replication}},
        }
        replication_listener = {
            "port": replication,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "resources": [{"names": ["replication"], "compress": False}],
        }
        self.main = Homeserver(directory, module_config, extra=shared, listeners=(replication_listener,), metrics=True)
        self.workers = [Worker(self.main, "worker1"), Worker(self.main, "worker2")]

    @property
    def processes(self) -> list[SynapseProcess]:
        return [self.main, *self.workers]

    def start(self) -> None:
        self.redis.start()
        # Main first: it creates the schema (a worker on an empty database exits).
        self.main.start()
        for worker in self.workers:
            worker.launch()
        for worker in self.workers:
            worker.wait_up()

    def stop(self) -> None:
        """Workers, main, Redis: each even when stopping another failed."""
        with contextlib.ExitStack() as stack:
            stack.callback(self.redis.stop)
            stack.callback(self.main.stop)
            for worker in self.workers:
                stack.callback(worker.stop)

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        return self.postgres.execute(self.database, query, params)


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    postgres = Postgres()
    try:
        postgres.start()
        yield postgres
    finally:
        postgres.stop()


@contextlib.contextmanager
def running_cluster(
    directory: Path, postgres: Postgres, database: str, module_config: dict[str, Any]
) -> Iterator[Cluster]:
    cluster = Cluster(directory, postgres, database, module_config)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
