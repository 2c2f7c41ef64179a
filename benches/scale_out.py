#!/usr/bin/env python3
"""Scale-out costs through real Synapse processes:

1. single-use tokens: login latency with and without `single_use_tokens`, on SQLite and on
   PostgreSQL (four single-process Synapse servers side by side, logging in on each in turn, a
   fresh `jti` per login for all of them), and the store's insert alone, as Synapse's own database
   pool times that transaction (`synapse_storage_transaction_time_*{desc="…_record"}`);
2. Synapse workers: logins/s with concurrent clients on one generic worker and on two
   (PostgreSQL, Redis, the main process and two workers), embedded and in daemon mode, with the
   CPU time each process used.

    scale_out.py --bin target/release/synapse-token-auth [--logins 400] [--seconds 6]
                 [--repeats 2] [--clients 8] [--json out.json]

Run it with the Python of a virtualenv that has Synapse (with its `redis` extra), psycopg2 and
this project's wheel. PostgreSQL and Redis come from the system packages (Debian: postgresql,
redis-server) and run in temporary directories on unix sockets, as in the worker tests, whose
machinery (python-shim/tests/cluster.py) this reuses. Everything is bounded by the arguments
and stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "python-shim" / "tests"))
from cluster import Postgres, running_cluster, running_postgres  # noqa: E402
from homeserver import Daemon, Homeserver  # noqa: E402
from matrix_client import hs_token  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

SECRET = "bench-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
LOGIN_TYPE = "com.famedly.login.token"
RECORD = "synapse_token_auth_used_tokens_record"


def jwt(sub: str) -> str:
    # Every token carries a fresh `jti`, also for servers without single-use tokens: the same
    # token shape everywhere, so the difference is the check.
    return hs_token({"sub": sub, "exp": int(time.time()) + 3600, "jti": uuid.uuid4().hex}, SECRET)


class Connection:
    """One persistent HTTP/1.1 connection to a Synapse client listener."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def login(self, user: str) -> int:
        body = {"type": LOGIN_TYPE, "identifier": {"type": "m.id.user", "user": user}, "token": jwt(user)}
        self.conn.request("POST", "/_matrix/client/v3/login", json.dumps(body), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        response.read()
        return response.status


def percentiles(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": q[94], "p99": q[98], "n": len(values)}


def transaction_totals(process, desc: str) -> tuple[float, float]:
    """(count, seconds) of Synapse's database transactions named `desc` in this process."""
    count = seconds = 0.0
    for family in text_string_to_metric_families(process.metrics()):
        for sample in family.samples:
            if sample.labels.get("desc") != desc:
                continue
            if sample.name.startswith("synapse_storage_transaction_time_count"):
                count += sample.value
            elif sample.name.startswith("synapse_storage_transaction_time_sum"):
                seconds += sample.value
    return count, seconds


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(postgres: Postgres) -> float:
    """The postmaster and all its children (one backend per connection)."""
    root = postgres.process.pid
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(text.rsplit(")", 1)[1].split()[1])
        if pid == root or ppid == root:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += cpu_seconds(pid)
    return total


def single_use_cost(work: Path, postgres: Postgres, logins: int) -> dict:
    setups = {
        "SQLite": ("sqlite", False),
        "SQLite, single-use": ("sqlite", True),
        "PostgreSQL": ("postgres", False),
        "PostgreSQL, single-use": ("postgres", True),
    }
    servers: dict[str, Homeserver] = {}
    try:
        for i, (name, (engine, single_use)) in enumerate(setups.items()):
            config = {"secret": SECRET, "allow_registration": True, "single_use_tokens": single_use}
            extra = (
                {"database": postgres.create_database(f"bench_single_use_{'abcd'[i]}")}
                if engine == "postgres"
                else None
            )
            servers[name] = Homeserver(work / f"single-use-{i}", config, extra=extra, metrics=True)
        for server in servers.values():
            server.launch()
        for server in servers.values():
            server.wait_up(120)
        conns = {name: Connection(server.port) for name, server in servers.items()}
        for name, conn in conns.items():  # registers the user, then warms up
            for _ in range(5):
                assert conn.login("bench") == 200, name
        before = {name: transaction_totals(servers[name], RECORD) for name in servers}
        latency: dict[str, list[float]] = {name: [] for name in servers}
        # One login on each server in turn (in a new random order each time), so that load from
        # elsewhere on the machine falls on all four alike.
        for _ in range(logins):
            for name in random.sample(list(servers), len(servers)):
                started = time.perf_counter()
                status = conns[name].login("bench")
                latency[name].append((time.perf_counter() - started) * 1e3)
                assert status == 200, (name, status)
        stores = {}
        for name, server in servers.items():
            count, seconds = (a - b for a, b in zip(transaction_totals(server, RECORD), before[name], strict=True))
            if setups[name][1]:
                assert count == logins, (name, count)
                stores[name] = {"count": count, "mean_ms": seconds / count * 1e3}
            else:
                assert count == 0, (name, count)
    finally:
        for server in servers.values():
            server.stop()
    return {
        "logins": logins,
        "accepted_ms": {name: percentiles(values) for name, values in latency.items()},
        "store_insert": stores,
    }


def throughput(cluster, daemon: Daemon | None, postgres: Postgres, seconds: float, clients: int, repeats: int) -> dict:
    """Logins/s of `clients` concurrent clients, each with its own user and connection, on
    worker1 alone and spread over both workers, alternating `repeats` times."""
    users = [f"load{i}" for i in range(clients)]
    for user in users:  # registration, and a first login on each worker
        for worker in cluster.workers:
            assert Connection(worker.port).login(user) == 200, (worker.name, user)
    results: dict[str, dict] = {}
    for _ in range(repeats):
        for layout in ("1 worker", "2 workers"):
            targets = cluster.workers[:1] if layout == "1 worker" else cluster.workers
            counts = [0] * clients
            errors: list[str] = []
            processes = {("main" if p is cluster.main else p.name): p.process.pid for p in cluster.processes}
            if daemon is not None:
                processes["daemon"] = daemon_pid(daemon)
            cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
            pg_before = postgres_cpu_seconds(postgres)
            start = time.monotonic()
            stop = start + seconds

            def client(i: int, counts=counts, errors=errors, stop=stop, targets=targets) -> None:
                conn = Connection(targets[i % len(targets)].port)
                while time.monotonic() < stop:
                    status = conn.login(users[i])
                    if status != 200:
                        errors.append(f"{users[i]}: {status}")
                        return
                    counts[i] += 1

            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - start
            assert not errors, errors
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
            cpu["postgresql"] = postgres_cpu_seconds(postgres) - pg_before
            entry = results.setdefault(layout, {"logins": 0, "seconds": 0.0, "cpu_seconds": {}})
            entry["logins"] += sum(counts)
            entry["seconds"] += elapsed
            for name, value in cpu.items():
                entry["cpu_seconds"][name] = entry["cpu_seconds"].get(name, 0.0) + value
    for entry in results.values():
        entry["logins_per_second"] = entry["logins"] / entry["seconds"]
        # CPU time per login, in ms, by process: where the work goes.
        entry["cpu_ms_per_login"] = {name: v / entry["logins"] * 1e3 for name, v in entry["cpu_seconds"].items()}
    return results


def daemon_pid(daemon: Daemon) -> int:
    """systemd-socket-activate execs the daemon in place: same PID."""
    return daemon.process.pid


def workers_throughput(work: Path, postgres: Postgres, seconds: float, clients: int, repeats: int) -> dict:
    results = {}
    for mode in ("embedded", "daemon"):
        directory = work / f"workers-{mode}"
        directory.mkdir()
        with contextlib.ExitStack() as stack:
            daemon = None
            if mode == "embedded":
                module_config = {"secret": SECRET, "allow_registration": True}
            else:
                daemon = Daemon(directory, f'secret = "{SECRET}"\nallow_registration = true\n[server]\nworkers = 1\n')
                stack.callback(daemon.stop)
                daemon.start()
                module_config = {"verifier": {"socket": str(daemon.socket), "timeout_seconds": 10}}
            cluster = stack.enter_context(running_cluster(directory, postgres, f"bench_workers_{mode}", module_config))
            results[mode] = throughput(cluster, daemon, postgres, seconds, clients, repeats)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the daemon binary (daemon mode)")
    parser.add_argument("--logins", type=int, default=400, help="sequential logins per server, single-use part")
    parser.add_argument("--seconds", type=float, default=6.0, help="per layout and repeat, for logins/s")
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the 1- and 2-worker layouts")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for logins/s")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ["SYNAPSE_TOKEN_AUTH_BIN"] = str(Path(args.bin).resolve())

    work = Path(tempfile.mkdtemp(prefix="sta-scale-"))
    work.chmod(0o755)
    try:
        with running_postgres() as postgres:
            single_use = single_use_cost(work, postgres, args.logins)
            workers = workers_throughput(work, postgres, args.seconds, args.clients, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "single_use": single_use,
        "workers": {"clients": args.clients, "seconds": args.seconds, "repeats": args.repeats, "modes": workers},
    }

    print(f"login latency in ms, sequential, {args.logins} logins per server (p50 / p95 / p99)")
    for name, a in single_use["accepted_ms"].items():
        store = single_use["store_insert"].get(name)
        extra = f"   store insert {store['mean_ms']:.2f} ms (mean)" if store else ""
        print(f"  {name:<24} {a['p50']:6.2f} / {a['p95']:6.2f} / {a['p99']:6.2f}{extra}")
    print(f"logins/s, {args.clients} concurrent clients, PostgreSQL + Redis, main + generic workers")
    for mode, layouts in workers.items():
        for layout, entry in layouts.items():
            cpu = ", ".join(f"{k} {v:.1f}" for k, v in entry["cpu_ms_per_login"].items())
            print(f"  {mode:<9} {layout:<10} {entry['logins_per_second']:6.1f}/s   CPU ms per login: {cpu}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
