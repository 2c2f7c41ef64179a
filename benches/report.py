#!/usr/bin/env python3
"""Turns the benchmark outputs into results/report.md and PNG plots.

report.py --out results [--criterion target/criterion] [--python py.json] [--daemon daemon.json] [--e2e e2e.json]
          [--idp-keys idp_keys.json] [--scale-out scale_out.json]

A section whose input is not given is left out (e.g. after running only e2e_login.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ALGORITHMS = ["HS256", "HS512", "RS256", "ES256", "EdDSA"]
#: What daemon mode may add to a login's p50 over embedded mode, accepted and rejected alike.
DAEMON_TARGET_MS = 0.3
#: e2e_login.py --round-trip: daemon mode against a stand-in that only checks the HMAC.
CANNED = "ours, daemon, canned verifier"
OURS_PY = "synapse-token-auth (pyo3)"


def criterion_median_us(root: Path, alg: str, name: str, group: str = "verify") -> float | None:
    # criterion turns the id "HS512/synapse-token-auth" into the directory "HS512_synapse-token-auth"
    path = root / group / f"{alg}_{name}" / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e3


def save(fig, out: Path, name: str, alt: str) -> list[str]:
    """Writes the figure as out/name and returns the report lines that show it."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    return ["", f"![{alt}]({name})", ""]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {len(__import__('os').sched_getaffinity(0))} cores, Linux {platform.release()}; {rustc}"


def verify_section(a: argparse.Namespace, py: dict) -> list[str]:
    md: list[str] = []
    md += [
        "## 1. Verification cost per token (µs, lower is better)",
        "",
        f"Python columns: median of {py['rounds']} interleaved rounds. Rust column: criterion median. "
        "Ours checks the whole policy (subject against the login user, claims, algorithm binding); "
        "the libraries check signature, algorithm and `exp`.",
        "",
        "| algorithm | ours, Rust | ours, from Python | PyJWT | authlib | jwcrypto | fastest alternative / ours |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = {}
    for alg in ALGORITHMS:
        s = py["samples"][alg]
        med = {k: statistics.median(x) for k, x in s.items()}
        spread = {k: (min(x), max(x)) for k, x in s.items()}
        rust = criterion_median_us(a.criterion, alg, "synapse-token-auth")
        fastest = min(med[k] for k in med if k != OURS_PY)
        rows[alg] = (rust, med)
        cells = {k: f"{med[k]:.1f} ({spread[k][0]:.1f}-{spread[k][1]:.1f})" for k in med}
        rust_cell = f"{rust:.2f}" if rust is not None else "n/a"
        md.append(
            f"| {alg} | {rust_cell} | {cells[OURS_PY]} | {cells['PyJWT']} | {cells['authlib']} | "
            f"{cells['jwcrypto']} | {fastest / med[OURS_PY]:.1f}x |"
        )
    hs = criterion_median_us(a.criterion, "HS512", "synapse-token-auth")
    raw = criterion_median_us(a.criterion, "HS512", "jsonwebtoken-decode")
    if hs and raw:
        md += [
            "",
            f"HS512 from Rust: `Verifier::verify` {hs:.2f} µs against a plain `jsonwebtoken::decode` of "
            f"the same token {raw:.2f} µs: ratio {hs / raw:.2f} (target: at most 1.5).",
        ]
    oauth = criterion_median_us(a.criterion, "RS256", "oauth-jwks-cached", "oauth")
    pem = criterion_median_us(a.criterion, "RS256", "jwt-login-pem-file", "oauth")
    if oauth and pem:
        verdict = "met" if oauth / pem <= 1.1 else "not met"
        md += [
            "",
            f"An `oauth` login with a cached JWKS key (RS256: verify, scopes, claim rule, naming the user) "
            f"{oauth:.2f} µs against a JWT login with the same key from a PEM file {pem:.2f} µs: ratio "
            f"{oauth / pem:.2f} (target: at most 1.1, {verdict}).",
        ]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    libs = [
        ("ours, Rust", None),
        ("ours, from Python", OURS_PY),
        ("PyJWT", "PyJWT"),
        ("authlib", "authlib"),
        ("jwcrypto", "jwcrypto"),
    ]
    width = 0.16
    for i, (label, key) in enumerate(libs):
        vals = [(rows[alg][0] or 0) if key is None else rows[alg][1][key] for alg in ALGORITHMS]
        ax.bar([x + (i - 2) * width for x in range(len(ALGORITHMS))], vals, width, label=label)
    ax.set_xticks(range(len(ALGORITHMS)), ALGORITHMS)
    ax.set_yscale("log")
    ax.set_ylabel("µs per verification (log scale)")
    ax.set_xlabel("algorithm")
    ax.set_title("Cost of verifying one token")
    ax.legend(fontsize=8)
    md += save(fig, a.out, "verify.png", "verification cost")
    return md


def daemon_section(a: argparse.Namespace, daemon: dict) -> list[str]:
    md: list[str] = []
    md += [
        "## 2. Verifier daemon throughput and latency",
        "",
        f"oha, 32 connections, {daemon['seconds']:g} s per run, audit logging on (to a file).",
        "",
        "| transport | workers | token | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in daemon["throughput"]:
        md.append(
            f"| {r['transport']} | {r['workers']} | {r['outcome']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | "
            f"{r['p99_ms']:.3f} |"
        )
    for w in (1, 2):
        rss = daemon[f"rss_kib_{w}"]
        md.append(
            f"\nRSS with {w} worker(s): {rss['before'] / 1024:.1f} MiB before, {rss['after'] / 1024:.1f} MiB "
            "after the load (target: under 16 MiB)."
        )
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [f"{r['transport']}\n{r['workers']}w {r['outcome']}" for r in daemon["throughput"]]
    ax.bar(range(len(labels)), [r["rps"] / 1000 for r in daemon["throughput"]], color="tab:blue")
    ax.axhline(60, color="tab:red", linestyle="--", label="target: 60k/s on 1 worker, unix")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("thousand verifications per second")
    ax.set_title("Verifier daemon throughput (oha, 32 connections)")
    ax.legend()
    md += save(fig, a.out, "daemon.png", "daemon throughput")
    return md


def e2e_section(a: argparse.Namespace, e2e: dict) -> list[str]:
    md: list[str] = []
    md += [
        "## 3. End-to-end login through Synapse",
        "",
        f"All {len(e2e['accepted_ms'])} servers ran at once; {e2e['rounds']} rounds of sequential logins, "
        + (
            "each server taking its logins of a round in one block"
            if e2e.get("order") == "block"
            else "each login sent to every server in turn in a random order"
        )
        + ", then logins/s with 1 and 4 concurrent clients. A login includes Synapse creating a device and an "
        "access token.",
        "",
        "| setup | accepted p50 / p95 / p99 ms | rejected p50 / p95 / p99 ms | logins/s, 1 client | 4 clients |",
        "|---|---|---|---|---|",
    ]
    names = list(e2e["accepted_ms"])
    for n in names:
        acc, rej, t = e2e["accepted_ms"][n], e2e["rejected_ms"][n], e2e["logins_per_second"][n]
        md.append(
            f"| {n} | {acc['p50']:.2f} / {acc['p95']:.2f} / {acc['p99']:.2f} | {rej['p50']:.2f} / "
            f"{rej['p95']:.2f} / {rej['p99']:.2f} | {t['1']:.0f} | {t['4']:.0f} |"
        )
    builtin = e2e["accepted_ms"]["Synapse jwt_config"]["p50"]
    md.append("")
    for n in names[:2]:
        md.append(
            f"- {n}: accepted p50 {e2e['accepted_ms'][n]['p50'] - builtin:+.2f} ms against Synapse's built-in "
            f"JWT login (target: within 1 ms); rejected p50 {e2e['rejected_ms'][n]['p50']:.2f} ms against the "
            f"original module's {e2e['rejected_ms']['original module']['p50']:.2f} ms."
        )
    intervals = e2e.get("daemon_over_embedded_ms", {})  # runs before the intervals have none
    for n in names:
        if not n.startswith("ours, daemon"):
            continue
        extra = {
            k: e2e[f"{k}_ms"][n]["p50"] - e2e[f"{k}_ms"]["ours, embedded"]["p50"] for k in ("accepted", "rejected")
        }
        interval = intervals.get(n, {})
        spread = {
            k: f" (95 % interval {i['low']:+.2f} to {i['high']:+.2f})" if (i := interval.get(k)) else "" for k in extra
        }
        said = (
            f"- {n} against ours, embedded: accepted p50 {extra['accepted']:+.2f} ms{spread['accepted']}, "
            f"rejected p50 {extra['rejected']:+.2f} ms{spread['rejected']}"
        )
        if n == CANNED:
            md.append(
                said + ": what asking another process at all costs on this machine (`canned_verifier.py` answers "
                "after one HMAC check, with no HTTP framework, log line or metrics)."
            )
            continue
        # Judged at the precision shown: +0.30 ms meets "at most 0.3 ms".
        met = round(max(extra.values()), 2) <= DAEMON_TARGET_MS
        beyond = met and any(interval.get(k, {}).get("high", 0) > DAEMON_TARGET_MS for k in extra)
        share = ""
        if CANNED in names:
            own = {k: e2e[f"{k}_ms"][n]["p50"] - e2e[f"{k}_ms"][CANNED]["p50"] for k in extra}
            share = f"; over the canned verifier {own['accepted']:+.2f} ms accepted, {own['rejected']:+.2f} ms rejected"
        md.append(
            said
            + f" (target: at most +{DAEMON_TARGET_MS:g} ms for both): {'met' if met else 'not met'}"
            + (", though an interval reaches past it" if beyond else "")
            + share
            + "."
        )
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.2 * len(names)), 4))
    for ax, key, title in ((axes[0], "accepted_ms", "accepted logins"), (axes[1], "rejected_ms", "rejected logins")):
        for i, pct in enumerate(("p50", "p95", "p99")):
            ax.bar([x + (i - 1) * 0.25 for x in range(len(names))], [e2e[key][n][pct] for n in names], 0.25, label=pct)
        ax.set_xticks(range(len(names)), [textwrap.fill(n, 12) for n in names], fontsize=8)
        ax.set_ylabel("latency, ms")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.suptitle("End-to-end login latency through Synapse (SQLite, loopback)")
    md += save(fig, a.out, "e2e.png", "end-to-end latency")
    return md


def scaling_section(a: argparse.Namespace, py: dict, daemon: dict) -> list[str]:
    md: list[str] = []
    md += [
        "## 4. Scaling",
        "",
        "Verification cost against token size (HS512, from Python):",
        "",
        "| token bytes | ours µs | PyJWT µs |",
        "|---|---|---|",
    ]
    for r in py["scaling"]:
        md.append(f"| {r['token_bytes']} | {r[OURS_PY]:.2f} | {r['PyJWT']:.2f} |")
    md += [
        "",
        "Daemon requests/s against concurrent clients (1 worker, unix socket):",
        "",
        "| clients | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for r in daemon["concurrency"]:
        md.append(f"| {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r["token_bytes"] for r in py["scaling"]]
    axes[0].plot(sizes, [r[OURS_PY] for r in py["scaling"]], marker="o", label="ours (pyo3)")
    axes[0].plot(sizes, [r["PyJWT"] for r in py["scaling"]], marker="o", label="PyJWT")
    axes[0].set_xlabel("token size, bytes")
    axes[0].set_ylabel("µs per verification")
    axes[0].set_title("HS512 cost against token size")
    axes[0].legend()
    clients = [r["clients"] for r in daemon["concurrency"]]
    axes[1].plot(clients, [r["rps"] / 1000 for r in daemon["concurrency"]], marker="o")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("concurrent clients")
    axes[1].set_ylabel("thousand requests per second")
    axes[1].set_title("Daemon (1 worker) against concurrency")
    md += save(fig, a.out, "scaling.png", "scaling")
    return md


def idp_keys_section(results: list[dict]) -> list[str]:
    cooldown = results[0]["cooldown_seconds"]
    md = [
        "## 6. Keys from a real OpenID provider",
        "",
        "The provider of the tests (`tests/idp`, oidc-provider) publishes an ES256 key; the policy finds its key set "
        "through discovery (`oidc_issuer`). Through Synapse: the first login pays for discovery and the key-set fetch, "
        "the next ones use the cached keys (every account exists, so no registration is timed). Then a storm: "
        "concurrent logins (20 at a time) with a `kid` the provider published only after the last fetch, a whole "
        f"refetch cooldown ({cooldown} s) after it.",
        "",
        "| mode | first login ms | cached login p50 ms | the fetch adds ms | storm: logins | refused | key-set fetches "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        md.append(
            f"| {r['mode']} | {r['first_login_ms']:.1f} | {r['cached_login_p50_ms']:.1f} | "
            f"{r['first_login_extra_ms']:.1f} | {r['storm_logins']} | {r['storm_refused']} | "
            f"{r['storm_key_set_fetches']} | {r['storm_seconds']:.2f} |"
        )
    md.append("")
    return md


def scale_out_section(scale: dict, out: Path) -> list[str]:
    """Single-use tokens on SQLite and PostgreSQL; logins/s on one and two Synapse workers."""
    single, workers = scale["single_use"], scale["workers"]
    acc = single["accepted_ms"]
    md = [
        "## 5. Scale-out: single-use tokens and Synapse workers",
        "",
        f"Single-use tokens: four single-process Synapse servers (embedded mode) ran at once, two on SQLite "
        f"and two on one PostgreSQL; {single['logins']} sequential logins on each, one on "
        "each server in turn, every token with a fresh `jti` on all four. The store's insert is Synapse's own "
        "timing of that database transaction (`synapse_storage_transaction_time_sum` / `_count` for "
        "`synapse_token_auth_used_tokens_record`, commit included, waiting for a connection not).",
        "",
        "| database | login p50 / p95 / p99 ms | with `single_use_tokens` | p50 difference | store insert, mean ms |",
        "|---|---|---|---|---|",
    ]
    engines = ("SQLite", "PostgreSQL")
    for engine in engines:
        plain, once = acc[engine], acc[f"{engine}, single-use"]
        store = single["store_insert"][f"{engine}, single-use"]
        md.append(
            f"| {engine} | {plain['p50']:.2f} / {plain['p95']:.2f} / {plain['p99']:.2f} | {once['p50']:.2f} / "
            f"{once['p95']:.2f} / {once['p99']:.2f} | {once['p50'] - plain['p50']:+.2f} ms | {store['mean_ms']:.2f} |"
        )
    modes = workers["modes"]
    md += [
        "",
        f"Synapse workers: PostgreSQL, Redis, the main process and two generic workers, the module loaded in all "
        f"three. {workers['clients']} concurrent clients, each logging its own user in over and over on one "
        f"connection, for {workers['seconds']:g} s per layout, the layouts alternated {workers['repeats']} times: "
        "all clients on worker 1, or half on each worker. CPU is the time each process used during the runs, "
        "per login (the idle worker too: it follows the replication stream).",
        "",
        "| mode | logins/s, 1 worker | 2 workers | 2 / 1 | CPU ms per login, 1 worker | 2 workers |",
        "|---|---|---|---|---|---|",
    ]

    def cpu(entry: dict) -> str:
        return ", ".join(f"{name} {ms:.1f}" for name, ms in entry["cpu_ms_per_login"].items())

    for mode, layouts in modes.items():
        one, two = layouts["1 worker"], layouts["2 workers"]
        md.append(
            f"| {mode} | {one['logins_per_second']:.0f} | {two['logins_per_second']:.0f} | "
            f"{two['logins_per_second'] / one['logins_per_second']:.2f} | {cpu(one)} | {cpu(two)} |"
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (label, suffix) in enumerate((("without", ""), ("single-use", ", single-use"))):
        axes[0].bar(
            [x + (i - 0.5) * 0.35 for x in range(len(engines))],
            [acc[f"{e}{suffix}"]["p50"] for e in engines],
            0.35,
            label=label,
        )
    axes[0].set_xticks(range(len(engines)), engines)
    axes[0].set_ylabel("login p50, ms")
    axes[0].set_title("Single-use tokens")
    axes[0].legend(fontsize=8)
    names = list(modes)
    for i, layout in enumerate(("1 worker", "2 workers")):
        axes[1].bar(
            [x + (i - 0.5) * 0.35 for x in range(len(names))],
            [modes[m][layout]["logins_per_second"] for m in names],
            0.35,
            label=layout,
        )
    axes[1].set_xticks(range(len(names)), names)
    axes[1].set_ylabel("logins per second")
    axes[1].set_title(f"Synapse workers ({workers['clients']} clients)")
    axes[1].legend(fontsize=8)
    return md + save(fig, out, "scale_out.png", "scale-out")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--criterion", type=Path)
    p.add_argument("--python", type=Path)
    p.add_argument("--daemon", type=Path)
    p.add_argument("--e2e", type=Path)
    p.add_argument("--idp-keys", type=Path)
    p.add_argument("--scale-out", type=Path)
    p.add_argument("--synapse-version", default="?")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    py = json.loads(a.python.read_text()) if a.python else None
    daemon = json.loads(a.daemon.read_text()) if a.daemon else None
    e2e = json.loads(a.e2e.read_text()) if a.e2e else None
    scale = json.loads(a.scale_out.read_text()) if a.scale_out else None
    idp_keys = json.loads(a.idp_keys.read_text()) if a.idp_keys else None
    versions = f"Synapse {a.synapse_version}"
    if py is not None:
        v = py["versions"]
        versions = (
            f"Python {v['python']}, {versions}, PyJWT {v['PyJWT']}, authlib {v['authlib']}, jwcrypto {v['jwcrypto']}"
        )
    complete = None not in (py, daemon, e2e, idp_keys, scale, a.criterion)
    md = [
        "# synapse-token-auth benchmark report",
        "",
        f"Machine: {machine()}. {versions}.",
        ("All numbers below were measured in one run of `make bench`" if complete else "Measured")
        + " on this machine, which is shared: read ratios measured side by side, not absolute values. "
        "Spreads are min-max over the rounds.",
        "",
    ]
    if py is not None and a.criterion is not None:
        md += verify_section(a, py)
    if daemon is not None:
        md += daemon_section(a, daemon)
    if e2e is not None:
        md += e2e_section(a, e2e)
    if py is not None and daemon is not None:
        md += scaling_section(a, py, daemon)
    if scale is not None:
        md += scale_out_section(scale, a.out)
    if idp_keys is not None:
        md += idp_keys_section(idp_keys)
    (a.out / "report.md").write_text("\n".join(md) + "\n")
    print(f"wrote {a.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
