#!/usr/bin/env python3
"""Load on the verifier daemon with oha: requests/s and latency percentiles over a unix socket
and over TCP, with 1 and 2 workers, accepted and rejected tokens, and RSS before and after; then
requests/s against the number of concurrent clients (the Synapse side of daemon mode).

    benches/daemon_load.py --bin target/release/synapse-token-auth [--seconds 5] [--json out.json]

Every run is bounded by --seconds; traffic goes to this machine only (unix socket, 127.0.0.1).
Target (read off the output): one worker >= 60 000 verifications/s over a unix socket; RSS under
16 MiB after the load. The daemon logs its audit line per request at the default level, to a
file, as it would to the journal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECRET = "bench-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Daemon:
    def __init__(self, binary: str, work: Path, workers: int) -> None:
        self.socket = work / "v.sock"
        self.port = free_port()
        config = work / "config.toml"
        config.write_text(
            f'secret = "{SECRET}"\n[server]\nlisten = ["unix:{self.socket}", "tcp:127.0.0.1:{self.port}"]\n'
            f"workers = {workers}\n"
        )
        self.log = open(work / f"daemon-{workers}.log", "wb")
        self.process = subprocess.Popen([binary, "-c", str(config), "serve"], stderr=self.log, stdout=self.log)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the daemon did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)
        self.socket.unlink(missing_ok=True)


def oha(seconds: float, connections: int, body: str, target: list[str]) -> dict:
    out = subprocess.run(
        [
            "oha",
            "--no-tui",
            "--output-format",
            "json",
            "-z",
            f"{seconds}s",
            "-c",
            str(connections),
            "-m",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            *target,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    r = json.loads(out)
    return {
        "rps": r["summary"]["requestsPerSec"],
        "p50_ms": r["latencyPercentiles"]["p50"] * 1e3,
        "p99_ms": r["latencyPercentiles"]["p99"] * 1e3,
        "status": r.get("statusCodeDistribution", {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not shutil.which("oha"):
        print("oha is required: cargo install --locked oha", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sta-load-"))
    tool_config = work / "mint.toml"
    tool_config.write_text(f'secret = "{SECRET}"\n')
    good = subprocess.run(
        [args.bin, "-c", str(tool_config), "mint", "--sub", "alice", "--expires-in", "1h"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    bad = good[:-1] + ("A" if good[-1] != "A" else "B")
    body = lambda tok: json.dumps({"token": tok, "user": "alice", "server_name": "example.org"})  # noqa: E731
    results: dict = {"throughput": [], "concurrency": [], "seconds": args.seconds, "cores": os.cpu_count()}
    print(f"{'run':<36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  status")
    try:
        for workers in (1, 2):
            daemon = Daemon(args.bin, work, workers)
            before = rss_kib(daemon.process.pid)
            unix = ["--unix-socket", str(daemon.socket), "http://localhost/v1/verify"]
            tcp = [f"http://127.0.0.1:{daemon.port}/v1/verify"]
            for transport, target in (("unix", unix), ("tcp", tcp)):
                for outcome, tok in (("accepted", good), ("rejected", bad)):
                    r = oha(args.seconds, 32, body(tok), target)
                    r.update(transport=transport, workers=workers, outcome=outcome)
                    results["throughput"].append(r)
                    print(
                        f"{transport}, {workers} worker(s), {outcome:<10}          {r['rps']:9.0f} {r['p50_ms']:8.3f} "
                        f"{r['p99_ms']:8.3f}  {r['status']}"
                    )
            after = rss_kib(daemon.process.pid)
            results[f"rss_kib_{workers}"] = {"before": before, "after": after}
            print(f"RSS with {workers} worker(s): {before} KiB before, {after} KiB after the load")
            if workers == 1:
                for clients in (1, 4, 16, 64):
                    r = oha(max(args.seconds / 2, 1), clients, body(good), unix)
                    r.update(clients=clients)
                    results["concurrency"].append(r)
                    print(
                        f"unix, 1 worker, {clients:>2} concurrent clients      {r['rps']:9.0f} {r['p50_ms']:8.3f} "
                        f"{r['p99_ms']:8.3f}"
                    )
            daemon.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
