#!/usr/bin/env python3
"""End-to-end login against real Synapse servers, side by side: our module (embedded and daemon
mode), the original Python module (synapse-token-authenticator from PyPI) and Synapse's built-in
JWT login (`jwt_config`). All servers run at once (SQLite, loopback, relaxed rate limits) and
take their logins in turn, one login each in a random order, so machine noise hits all alike and
differences of a few tenths of a millisecond stand out.

    e2e_login.py --python-ours VENV/bin/python --python-original VENV2/bin/python --bin DAEMON
                 [--rounds 40] [--seconds 3] [--json out.json] [--round-trip]
                 [--daemon-client LABEL=[DIR][,BIN] ...]

`--round-trip` adds "ours, daemon, canned verifier": the module in daemon mode asking
canned_verifier.py, a stand-in that answers after one HMAC check and does nothing else. What that
server costs over embedded mode is the price of asking another process at all, on this machine;
the real daemon's own share is the difference between the two.

`--daemon-client LABEL=[DIR][,BIN]` adds a daemon-mode server "ours, daemon, LABEL" measured side
by side with the others: its Python finds the `synapse_token_auth` package in DIR first (another
build of the module, e.g. an earlier daemon client), and with BIN it asks a daemon of its own
started from that binary (e.g. an earlier daemon) instead of the shared one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import homeserver_config  # noqa: E402
from matrix_client import Client, hs_token  # noqa: E402

SECRET = "bench-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
USER = "bench"


def jwt(sub: str, secret: str = SECRET) -> str:
    return hs_token({"sub": sub, "exp": int(time.time()) + 3600}, secret)


class Server:
    def __init__(
        self,
        name: str,
        python: str,
        directory: Path,
        port: int,
        module_config,
        module: str,
        extra=None,
        login_type: str = "com.famedly.login.token",
        pythonpath: str | None = None,
    ) -> None:
        self.name, self.port, self.login_type = name, port, login_type
        directory.mkdir(parents=True)
        config = homeserver_config.write(directory, port, module_config, module=module, extra=extra)
        self.shared = json.loads(config.read_text())["registration_shared_secret"]
        self.log = open(directory / "stdout.log", "wb")
        env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
        self.process = subprocess.Popen(
            [python, "-m", "synapse.app.homeserver", "-c", str(config)],
            cwd=directory,
            stdout=self.log,
            stderr=self.log,
            env=env,
        )

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, conn, method: str, path: str, body=None) -> tuple[int, dict]:
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: Synapse exited")
            try:
                if self.request(self.connection(), "GET", "/_matrix/client/versions")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"{self.name}: Synapse did not start")

    def create_user(self) -> None:
        Client(f"http://127.0.0.1:{self.port}").register(self.shared, USER, admin=False)

    def login(self, conn, token: str) -> int:
        body = {"type": self.login_type, "token": token}
        if self.login_type == "com.famedly.login.token":
            body["identifier"] = {"type": "m.id.user", "user": USER}
        return self.request(conn, "POST", "/_matrix/client/v3/login", body)[0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def percentiles(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": q[94], "p99": q[98], "n": len(values)}


def p50_difference(ours: list[float], base: list[float], resamples: int = 2000) -> dict:
    """The difference of the two medians, with a 95 % bootstrap interval. The k-th values of both
    lists come from the same slot of the plan (every server took one login in it, in a random
    order), so slots are resampled as pairs and noise that hit both servers alike cancels. An
    accepted login's few milliseconds of database work make one run's median move by about 0.1 ms
    at 16 rounds: the interval says how far a difference can be trusted."""
    assert len(ours) == len(base)
    pick = random.Random(0)  # the same resamples for the same data
    n = len(ours)
    differences = sorted(
        statistics.median(ours[i] for i in idx) - statistics.median(base[i] for i in idx)
        for idx in ([pick.randrange(n) for _ in range(n)] for _ in range(resamples))
    )
    return {
        "p50": statistics.median(ours) - statistics.median(base),
        "low": differences[int(0.025 * resamples)],
        "high": differences[int(0.975 * resamples) - 1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-ours", required=True)
    parser.add_argument("--python-original", required=True)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--logins", type=int, default=40, help="accepted logins per server per round")
    parser.add_argument("--seconds", type=float, default=3.0, help="per server and client count, for logins/s")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--round-trip",
        action="store_true",
        help="also measure daemon mode against canned_verifier.py, a stand-in that only checks the HMAC",
    )
    parser.add_argument(
        "--order",
        choices=("login", "block"),
        default="login",
        help="login: every login goes to each server in turn (default); block: each server takes its logins of "
        "a round in a row, as earlier reports measured",
    )
    parser.add_argument(
        "--daemon-client",
        action="append",
        default=[],
        metavar="LABEL=[DIR][,BIN]",
        help="an extra daemon-mode server: the synapse_token_auth package from DIR, a daemon of its own from BIN",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sta-e2e-"))
    daemons: list[subprocess.Popen] = []

    def start_daemon(command: list[str], name: str) -> Path:
        sock = work / f"{name}.sock"
        config = work / f"{name}.toml"
        config.write_text(f'secret = "{SECRET}"\n[server]\nlisten = ["unix:{sock}"]\nworkers = 1\n')
        log = open(work / f"{name}.log", "wb")
        daemons.append(subprocess.Popen([*command, "-c", str(config), "serve"], stderr=log))
        return sock

    sock = start_daemon([args.bin], "daemon")
    ports = iter(range(28100 + random.randrange(500), 65000))
    # (name, python, module config, module, extra settings, login type, PYTHONPATH)
    setups = [
        ("ours, embedded", args.python_ours, {"secret": SECRET}, homeserver_config.MODULE, None, None, None),
        (
            "ours, daemon",
            args.python_ours,
            {"verifier": {"socket": str(sock)}},
            homeserver_config.MODULE,
            None,
            None,
            None,
        ),
        (
            "original module",
            args.python_original,
            {"jwt": {"secret": SECRET, "algorithm": "HS512"}},
            "synapse_token_authenticator.TokenAuthenticator",
            None,
            None,
            None,
        ),
        (
            "Synapse jwt_config",
            args.python_ours,
            None,
            homeserver_config.MODULE,
            {"jwt_config": {"enabled": True, "secret": SECRET, "algorithm": "HS512"}},
            "org.matrix.login.jwt",
            None,
        ),
    ]
    for number, spec in enumerate(args.daemon_client):
        label, _, rest = spec.partition("=")
        directory, _, binary = rest.partition(",")
        if not label or (directory and not Path(directory, "synapse_token_auth").is_dir()):
            parser.error(f"--daemon-client {spec!r}: expected LABEL=[DIR][,BIN], DIR holding synapse_token_auth/")
        setups.append(
            (
                f"ours, daemon, {label}",
                args.python_ours,
                {"verifier": {"socket": str(start_daemon([binary], f"daemon-{number}") if binary else sock)}},
                homeserver_config.MODULE,
                None,
                None,
                str(Path(directory).resolve()) if directory else None,
            )
        )
    if args.round_trip:
        canned = start_daemon([sys.executable, str(Path(__file__).with_name("canned_verifier.py"))], "canned")
        setups.append(
            (
                "ours, daemon, canned verifier",
                args.python_ours,
                {"verifier": {"socket": str(canned)}},
                homeserver_config.MODULE,
                None,
                None,
                None,
            )
        )
    servers: list[Server] = []
    try:
        for name, python, module_config, module, extra, login_type, pythonpath in setups:
            directory = work / name.replace(", ", "-").replace(" ", "-")
            servers.append(
                Server(
                    name,
                    python,
                    directory,
                    next(ports),
                    module_config,
                    module,
                    extra=extra,
                    login_type=login_type or "com.famedly.login.token",
                    pythonpath=pythonpath,
                )
            )
        for s in servers:
            s.wait_ready()
            s.create_user()
        conns = {s.name: s.connection() for s in servers}
        for s in servers:  # warm up; every server must accept and refuse as expected
            assert s.login(conns[s.name], jwt(USER)) == 200, s.name
            assert s.login(conns[s.name], jwt(USER, secret=SECRET[::-1])) == 403, s.name
        accepted = {s.name: [] for s in servers}
        rejected = {s.name: [] for s in servers}

        def plan():
            for _ in range(args.rounds):
                if args.order == "block":
                    for s in random.sample(servers, len(servers)):
                        for i in range(args.logins + args.logins // 2):
                            yield s, i < args.logins
                else:
                    for i in range(args.logins + args.logins // 2):
                        for s in random.sample(servers, len(servers)):
                            yield s, i < args.logins

        for s, good in plan():
            token = jwt(USER) if good else jwt(USER, secret=SECRET[::-1])
            started = time.perf_counter()
            status = s.login(conns[s.name], token)
            elapsed = (time.perf_counter() - started) * 1e3
            assert status == (200 if good else 403), (s.name, status)
            (accepted if good else rejected)[s.name].append(elapsed)
        throughput = {s.name: {} for s in servers}
        for clients in (1, 4):
            for s in random.sample(servers, len(servers)):
                counts = [0] * clients
                stop = time.monotonic() + args.seconds

                def client(i: int, s=s, counts=counts, stop=stop) -> None:
                    conn = s.connection()
                    while time.monotonic() < stop:
                        assert s.login(conn, jwt(USER)) == 200
                        counts[i] += 1

                threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                throughput[s.name][clients] = sum(counts) / args.seconds
    finally:
        for s in servers:
            s.stop()
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(15)

    result = {
        "rounds": args.rounds,
        "order": args.order,
        "accepted_ms": {k: percentiles(v) for k, v in accepted.items()},
        "rejected_ms": {k: percentiles(v) for k, v in rejected.items()},
        "logins_per_second": throughput,
        # Daemon mode over embedded mode: p50 differences with their 95 % intervals.
        "daemon_over_embedded_ms": {
            s.name: {
                key: p50_difference(latencies[s.name], latencies["ours, embedded"])
                for key, latencies in (("accepted", accepted), ("rejected", rejected))
            }
            for s in servers
            if s.name.startswith("ours, daemon")
        },
    }
    print(f"login latency in ms over {args.rounds} rounds ({args.order} order; p50 / p95 / p99), and logins/s")
    for s in servers:
        a, r = result["accepted_ms"][s.name], result["rejected_ms"][s.name]
        t = throughput[s.name]
        print(
            f"  {s.name:<20} accepted {a['p50']:6.2f} / {a['p95']:6.2f} / {a['p99']:6.2f}   "
            f"rejected {r['p50']:6.2f} / {r['p95']:6.2f} / {r['p99']:6.2f}   "
            f"{t[1]:6.1f}/s with 1 client, {t[4]:6.1f}/s with 4"
        )
    for name, extra in result["daemon_over_embedded_ms"].items():
        a, r = extra["accepted"], extra["rejected"]
        print(
            f"  {name}: p50 {a['p50']:+.2f} ms accepted (95 % interval {a['low']:+.2f} to {a['high']:+.2f}), "
            f"{r['p50']:+.2f} ms rejected ({r['low']:+.2f} to {r['high']:+.2f}) against embedded mode"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
