"""`make demo`: a local Synapse (SQLite, loopback) with JWT login, ready to try.

Writes a fresh secret and the configs under the demo directory, starts Synapse with the module
in embedded mode, mints a token with `synapse-token-auth mint`, logs in with it once to show it
works, prints the curl command to do the same, and keeps Synapse running until Ctrl-C.
With --check it stops after the login instead (CI runs it that way).
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import homeserver_config
from matrix_client import Client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the synapse-token-auth binary")
    parser.add_argument("--dir", required=True, type=Path, help="where the demo keeps its files")
    parser.add_argument("--port", type=int, default=8008)
    parser.add_argument("--check", action="store_true", help="exit after one successful login")
    args = parser.parse_args()
    directory: Path = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)

    secret_file = directory / "jwt-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48) + "\n")  # 64 characters: enough for HS512
        secret_file.chmod(0o600)
    module_config = {"secret_file": str(secret_file), "allow_registration": True}
    config = homeserver_config.write(directory, args.port, module_config)
    # The same keys as the module config, for `synapse-token-auth mint` and `verify`.
    tool_config = directory / "config.toml"
    tool_config.write_text(f'secret_file = "{secret_file}"\nallow_registration = true\n')

    base = f"http://127.0.0.1:{args.port}"
    print(f"starting Synapse for {homeserver_config.SERVER_NAME} on {base} (files in {directory})", flush=True)
    synapse = subprocess.Popen([sys.executable, "-m", "synapse.app.homeserver", "-c", str(config)], cwd=directory)
    try:
        wait_for(base, synapse)
        token = subprocess.run(
            [
                args.bin,
                "-c",
                str(tool_config),
                "mint",
                "--sub",
                "alice",
                "--expires-in",
                "1h",
                "--claim",
                "displayname=Alice",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        status, answer = Client(base).login("alice", token)
        print(f"\nJWT login as alice: HTTP {status} {json.dumps(answer)}")
        if status != 200:
            print(f"the login failed; see {directory / 'homeserver.log'}", file=sys.stderr)
            return 1
        if args.check:
            return 0
        print(
            "\nLog in yourself (a new token each time; users are registered on first login):\n\n"
            f"  TOKEN=$({args.bin} -c {tool_config} mint --sub bob)\n"
            f'  curl -s -XPOST {base}/_matrix/client/v3/login -d \'{{"type": "com.famedly.login.token", '
            '"identifier": {"type": "m.id.user", "user": "bob"}, "token": "\'"$TOKEN"\'"}\'\n\n'
            f'Why a token is refused: {args.bin} -c {tool_config} verify "$TOKEN" --user bob --server-name '
            f"{homeserver_config.SERVER_NAME}\n"
            f"Synapse's log: {directory / 'homeserver.log'}\n\nCtrl-C stops Synapse.",
            flush=True,
        )
        synapse.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if synapse.poll() is None:
            synapse.terminate()
            synapse.wait(20)


def wait_for(base: str, synapse: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if synapse.poll() is not None:
            raise SystemExit(f"Synapse exited with {synapse.returncode}")
        try:
            with urllib.request.urlopen(base + "/_matrix/client/versions", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("Synapse did not start within 90 s")


if __name__ == "__main__":
    sys.exit(main())
