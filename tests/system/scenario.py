#!/usr/bin/env python3
"""System test: the shipped units under a real systemd (PID 1 in systemd-nspawn), with Synapse
as a systemd service in daemon mode and the secret delivered only through LoadCredential=.

Usage: scenario.py ROOTFS ARTIFACTS   (run.sh prepares both)

Prints one line per step with pass/fail and its duration, then the `systemd-analyze security`
exposure of the service. Exits non-zero if any step fails or the container cannot boot.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# The demo's client (examples/matrix_client.py), standard library only like this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from matrix_client import Client, hs_token  # noqa: E402

ROOTFS, ARTIFACTS = Path(sys.argv[1]), Path(sys.argv[2])
SECRET = (ARTIFACTS / "jwt-secret").read_text().strip()
SERVER = "test.local"
results: list[tuple[str, bool, float, str]] = []


class StepFailedError(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailedError(message)


def step(name: str):
    def run(fn):
        started = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the run fails
            detail, ok = f"{type(e).__name__}: {e}", False
        elapsed = time.monotonic() - started
        results.append((name, ok, elapsed, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {elapsed:6.2f}s  {name}" + (f"  [{detail}]" if detail else ""), flush=True)
        return fn

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"
CLIENT = Client(BASE)


class Container:
    def __init__(self) -> None:
        self.log = open(ARTIFACTS / "nspawn-boot.log", "wb")
        self.nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-q",
                "--register=no",
                "--keep-unit",
                "--volatile=overlay",
                f"--bind-ro={ARTIFACTS}:/mnt/host",
                "-b",
                "-D",
                str(ROOTFS),
                "--console=pipe",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        self.pid: int | None = None

    def wait_for_systemd(self) -> None:
        # PID 1 of the container is the child of systemd-nspawn that runs systemd. Resolve it on
        # every try: a child seen early may be nspawn's own short-lived helper.
        deadline = time.monotonic() + 60
        while self.pid is None:
            check(
                self.nspawn.poll() is None,
                "systemd-nspawn exited: " + (ARTIFACTS / "nspawn-boot.log").read_text()[-2000:],
            )
            check(time.monotonic() < deadline, "systemd in the container never came up")
            children = subprocess.run(
                ["pgrep", "-P", str(self.nspawn.pid)], capture_output=True, text=True
            ).stdout.split()
            for child in children:
                if Path(f"/proc/{child}/root/run/systemd/private").exists():
                    self.pid = int(child)
            time.sleep(0.05)

    def run(self, *command: str, check_rc: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check_rc and proc.returncode != 0:
            raise StepFailedError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run("sh", "-c", script, **kw)

    def unit_state(self, unit: str) -> str:
        return self.run("systemctl", "is-active", unit, check_rc=False).stdout.strip()

    def poweroff(self) -> int:
        if self.pid is not None:
            self.run("systemctl", "poweroff", check_rc=False)
        try:
            return self.nspawn.wait(60)
        except subprocess.TimeoutExpired:
            self.nspawn.kill()
            return -1

    def kill(self) -> None:
        """Last resort, so that a failed run leaves no container behind."""
        if self.nspawn.poll() is None:
            self.nspawn.kill()
            self.nspawn.wait(30)


def jwt(sub: str, secret: str = SECRET, **claims) -> str:
    return hs_token({"sub": sub, "exp": int(time.time()) + 3600, **claims}, secret)


def http(method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
    return CLIENT.request(method, path, body, token)


def login(user: str, token: str) -> tuple[int, dict]:
    return CLIENT.login(user, token)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise StepFailedError(f"timed out waiting for {what}")


boot_started = time.monotonic()
c = Container()
atexit.register(c.kill)
try:
    c.wait_for_systemd()
except StepFailedError as e:
    print(f"FAIL  cannot boot the container: {e}")
    sys.exit(1)
state = c.run("systemctl", "is-system-running", "--wait", check_rc=False).stdout.strip()
results.append(("boot", state in ("running", "degraded"), time.monotonic() - boot_started, state))
print(
    f"{'PASS' if state in ('running', 'degraded') else 'FAIL'}  {time.monotonic() - boot_started:6.2f}s  boot: systemctl is-system-running = {state}"
)
if state == "degraded":
    print("      failed units: " + c.run("systemctl", "--failed", "--no-legend", check_rc=False).stdout.strip())


@step("install: binary, wheel, shipped units, configs; start the socket")
def _install():
    c.run("/mnt/host/setup.sh", str(PORT), timeout=120)
    check(c.unit_state("synapse-token-auth.socket") == "active", "socket not active")


@step("socket activation: the daemon is not running before the first login")
def _not_running():
    c.run("systemctl", "start", "matrix-synapse.service")
    wait_for(lambda: http("GET", "/_matrix/client/versions")[0] == 200, 90, "Synapse")
    state = c.unit_state("synapse-token-auth.service")
    check(state == "inactive", f"service is {state} before any login")
    return "Synapse up, verifier inactive"


admin_token = {}


@step("a registered user logs in (the first login starts the daemon)")
def _registered_login():
    shared = json.loads(c.run("cat", "/etc/matrix-synapse/homeserver.yaml").stdout)["registration_shared_secret"]
    admin_token["root"] = CLIENT.register(shared, "root", admin=True)["access_token"]
    CLIENT.register(shared, "alice", admin=False)
    status, body = login("alice", jwt("alice"))
    check(status == 200 and body.get("user_id") == "@alice:test.local", f"{status} {body}")
    check(c.unit_state("synapse-token-auth.service") == "active", "service not started by the login")
    return "200, service now active"


@step("a new user is registered when allowed")
def _register_allowed():
    status, body = login("newbie", jwt("newbie", displayname="New Bie"))
    check(status == 200 and body.get("user_id") == "@newbie:test.local", f"{status} {body}")


@step("a bad token gets 403")
def _bad_token():
    status, body = login("alice", jwt("alice", secret="x" * 64))
    check(status == 403 and body.get("errcode") == "M_FORBIDDEN", f"{status} {body}")


@step("the secret: unreadable by matrix-synapse, in no config Synapse reads, not in the unit")
def _secret():
    denied = c.run(
        "setpriv",
        "--reuid=matrix-synapse",
        "--regid=matrix-synapse",
        "--clear-groups",
        "cat",
        "/etc/synapse-token-auth/jwt-secret",
        check_rc=False,
    )
    check(denied.returncode != 0, "matrix-synapse could read the secret")
    found = c.sh(
        f"grep -rlF '{SECRET}' /etc/matrix-synapse /var/lib/matrix-synapse /etc/systemd /run/systemd/system 2>/dev/null || true"
    )
    check(found.stdout.strip() == "", f"secret found in {found.stdout.strip()}")
    mode = c.run("stat", "-c", "%a %U", "/etc/synapse-token-auth/jwt-secret").stdout.strip()
    return f"secret file {mode}; credential delivered via LoadCredential"


@step("journalctl -u synapse-token-auth shows the audit fields")
def _journal():
    out = c.run("journalctl", "-u", "synapse-token-auth.service", "-o", "json", "--no-pager").stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    accepted = [
        r for r in records if r.get("MESSAGE") == "JWT login accepted" and r.get("USER_ID") == "@alice:test.local"
    ]
    rejected = [r for r in records if r.get("MESSAGE") == "JWT login rejected" and r.get("REASON") == "bad_signature"]
    check(
        accepted and accepted[0].get("RESULT") == "accepted" and accepted[0].get("ALG") == "HS512",
        f"no accepted record in {len(records)}",
    )
    check(
        rejected and rejected[0].get("USER_ID") == "@alice:test.local", "no rejected record with REASON=bad_signature"
    )
    check(not any(SECRET in line for line in out.splitlines()), "secret in the journal")
    return f"{len(records)} records; USER_ID, RESULT, REASON, ALG, KID present"


@step("registration refused after `systemctl reload` with allow_registration = false")
def _reload_refuse():
    c.sh("sed -i 's/allow_registration = true/allow_registration = false/' /etc/synapse-token-auth/config.toml")
    c.run("systemctl", "reload", "synapse-token-auth.service")
    status, body = login("latecomer", jwt("latecomer"))
    check(status == 403, f"{status} {body}")
    status, _ = http("GET", "/_synapse/admin/v2/users/@latecomer:test.local", token=admin_token["root"])
    check(status == 404, "account created anyway")


@step("`systemctl reload` with a broken config keeps serving the old one")
def _reload_broken():
    c.sh(
        "cp /etc/synapse-token-auth/config.toml /root/good.toml && echo 'bogus = 1' >> /etc/synapse-token-auth/config.toml"
    )
    c.run("systemctl", "reload", "synapse-token-auth.service")
    check(c.unit_state("synapse-token-auth.service") == "active", "service not active after a broken reload")
    status, body = login("alice", jwt("alice"))
    check(status == 200, f"{status} {body}")
    log = c.run("journalctl", "-u", "synapse-token-auth.service", "--no-pager", "-o", "cat").stdout
    check("reload failed" in log, "no 'reload failed' in the journal")
    c.sh("cp /root/good.toml /etc/synapse-token-auth/config.toml")


SOCKET = "/run/synapse-token-auth/verify.sock"
# The shipped unit cannot write the socket's directory (ProtectSystem=strict, DynamicUser=yes),
# which would hide a daemon that removes the socket it was passed. For this step the service
# runs as root with the directory writable, as a less hardened unit would.
WRITABLE_RUN_DIR = "[Service]\\nDynamicUser=no\\nReadWritePaths=/run/synapse-token-auth\\n"


@step("`systemctl restart` during a stream of logins loses none of them, and the socket stays")
def _restart():
    c.sh(
        "mkdir -p /etc/systemd/system/synapse-token-auth.service.d && "
        f"printf '{WRITABLE_RUN_DIR}' > /etc/systemd/system/synapse-token-auth.service.d/writable.conf && "
        "systemctl daemon-reload && systemctl restart synapse-token-auth.service"
    )
    inode = c.run("stat", "-c", "%i", SOCKET).stdout.strip()
    stop = threading.Event()
    outcomes: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        count = 0
        while not stop.is_set() and count < 500:
            status, _ = login("alice", jwt("alice"))
            with lock:
                outcomes.append(status)
            count += 1

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        time.sleep(1.0)
        before = c.run("systemctl", "show", "-p", "MainPID", "--value", "synapse-token-auth.service").stdout.strip()
        c.run("systemctl", "restart", "synapse-token-auth.service")
        time.sleep(1.5)
        stop.set()
        for f in futures:
            f.result()
    after = c.run("systemctl", "show", "-p", "MainPID", "--value", "synapse-token-auth.service").stdout.strip()
    check(before != after, "the service did not restart")
    failed = [s for s in outcomes if s != 200]
    if failed:
        why = c.sh("grep -h 'JWT login refused' /var/lib/matrix-synapse/homeserver.log | tail -3", check_rc=False)
        raise StepFailedError(f"{len(failed)} of {len(outcomes)} logins failed: {sorted(set(failed))}; {why.stdout}")
    check(bool(outcomes), "no logins were made")
    # A stop of the service alone: the socket stays, and the next login starts it again.
    c.run("systemctl", "stop", "synapse-token-auth.service")
    after_stop = c.run("stat", "-c", "%i", SOCKET, check_rc=False).stdout.strip()
    check(after_stop == inode, f"socket inode {inode} -> {after_stop or 'gone'} after a stop")
    status, body = login("alice", jwt("alice"))
    check(status == 200, f"login after the stop: {status} {body}")
    check(c.unit_state("synapse-token-auth.service") == "active", "service not started again")
    c.sh("rm /etc/systemd/system/synapse-token-auth.service.d/writable.conf && systemctl daemon-reload")
    return f"{len(outcomes)} logins, all 200; MainPID {before} -> {after}; socket inode {inode} kept"


# The secret the daemon trusts now; the rotation step changes it.
current = {"secret": SECRET}


@step("key rotation: a second credential, old and new keys both log in, then the old one is dropped")
def _rotation():
    new_secret = secrets.token_urlsafe(48)
    c.sh(
        f"umask 077 && printf '%s' '{new_secret}' > /etc/synapse-token-auth/jwt-secret-next && "
        "mkdir -p /etc/systemd/system/synapse-token-auth.service.d && "
        "printf '[Service]\\nLoadCredential=jwt-secret-next:/etc/synapse-token-auth/jwt-secret-next\\n' "
        "> /etc/systemd/system/synapse-token-auth.service.d/rotation.conf && "
        "cp /etc/synapse-token-auth/config.toml /root/before-rotation.toml && "
        "printf '[[additional_keys]]\\nsecret_credential = \"jwt-secret-next\"\\n' >> /etc/synapse-token-auth/config.toml"
    )
    # Credentials are copied when the service starts, so a new one needs a restart, not a reload;
    # the socket keeps logins waiting meanwhile.
    c.run("systemctl", "daemon-reload")
    c.run("systemctl", "restart", "synapse-token-auth.service")
    for secret, key in ((SECRET, "primary"), (new_secret, "additional_keys[0]")):
        status, body = login("alice", jwt("alice", secret=secret))
        check(status == 200, f"{key}: {status} {body}")
    out = c.run("journalctl", "-u", "synapse-token-auth.service", "-o", "json", "--no-pager").stdout
    keys = {json.loads(line).get("KEY") for line in out.splitlines() if '"JWT login accepted"' in line}
    check({"primary", "additional_keys[0]"} <= keys, f"KEY fields in the journal: {keys}")
    check(new_secret not in out, "the new secret is in the journal")

    # The identity provider has switched: the new key becomes the only one.
    c.sh(
        "sed -e 's/^secret_credential = .*/secret_credential = \"jwt-secret-next\"/' "
        "/root/before-rotation.toml > /etc/synapse-token-auth/config.toml"
    )
    c.run("systemctl", "reload", "synapse-token-auth.service")
    status, body = login("alice", jwt("alice", secret=SECRET))
    check(status == 403, f"old key still accepted: {status} {body}")
    status, body = login("alice", jwt("alice", secret=new_secret))
    check(status == 200, f"new key refused: {status} {body}")
    current["secret"] = new_secret
    return "both keys accepted during the rotation, KEY in the journal; old key refused after it"


@step("the watchdog is fed: with WatchdogSec=2s the daemon outlives several intervals")
def _watchdog():
    shown = c.run("systemctl", "show", "-p", "WatchdogUSec", "--value", "synapse-token-auth.service").stdout.strip()
    check(shown == "30s", f"shipped WatchdogSec: {shown}")
    c.sh(
        "printf '[Service]\\nWatchdogSec=2s\\n' > /etc/systemd/system/synapse-token-auth.service.d/watchdog.conf && "
        "systemctl daemon-reload && systemctl restart synapse-token-auth.service"
    )
    show = ["systemctl", "show", "-p", "MainPID", "-p", "NRestarts", "--value", "synapse-token-auth.service"]
    before = c.run(*show).stdout.split()
    time.sleep(6)
    after = c.run(*show).stdout.split()
    check(before == after, f"MainPID/NRestarts changed: {before} -> {after} (killed by the watchdog?)")
    status, body = login("alice", jwt("alice", secret=current["secret"]))
    check(status == 200, f"{status} {body}")
    log = c.run("journalctl", "-u", "synapse-token-auth.service", "--no-pager", "-o", "cat").stdout
    check("Watchdog timeout" not in log, "systemd reported a watchdog timeout")
    c.sh("rm /etc/systemd/system/synapse-token-auth.service.d/watchdog.conf && systemctl daemon-reload")
    return f"MainPID {before[0]} alive after 3 intervals"


@step("`systemctl stop` is clean")
def _stop():
    c.run("systemctl", "stop", "synapse-token-auth.service", "synapse-token-auth.socket")
    result = c.run("systemctl", "show", "-p", "Result,ExecMainStatus", "synapse-token-auth.service").stdout.split()
    check("Result=success" in result and "ExecMainStatus=0" in result, " ".join(result))
    log = c.run("journalctl", "-u", "synapse-token-auth.service", "--no-pager", "-o", "cat", "-n", "5").stdout
    check("stopped" in log, "no 'stopped' line")
    return " ".join(result)


exposure = {}


@step("systemd-analyze security synapse-token-auth.service")
def _security():
    out = c.run("systemd-analyze", "security", "--no-pager", "synapse-token-auth.service", check_rc=False).stdout
    match = re.search(r"Overall exposure level for synapse-token-auth.service: ([0-9.]+) (\w+)", out)
    check(match is not None, out[-500:])
    exposure["value"], exposure["rating"] = float(match.group(1)), match.group(2)
    check(exposure["value"] <= 2.0, f"exposure {exposure['value']} above the 2.0 target")
    return f"exposure {exposure['value']} {exposure['rating']}"


code = c.poweroff()
results.append(("poweroff", code == 0, 0.0, f"nspawn exit {code}"))
print(f"{'PASS' if code == 0 else 'FAIL'}  poweroff: systemd-nspawn exited {code}")
failed = [name for name, ok, _, _ in results if not ok]
print(f"\nsystem test: {len(results) - len(failed)} passed, {len(failed)} failed")
if exposure:
    print(f"systemd-analyze security exposure: {exposure['value']} {exposure['rating']}")
sys.exit(1 if failed else 0)
