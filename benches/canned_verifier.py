#!/usr/bin/env python3
"""A stand-in for the verifier daemon, for measurement only: it answers the module's
`POST /v1/verify` requests with a fixed verdict after one HMAC-SHA512 check of the token, and does
nothing else (no HTTP framework, no claims, no log line, no metrics), one blocking thread per
connection. In `e2e_login.py --round-trip` the module asks it in daemon mode, so that the cost of
crossing to another process at all, which no daemon can avoid, is measured beside the daemon's.

    canned_verifier.py -c CONFIG serve

takes the daemon's arguments; of CONFIG it reads `secret` and the `unix:` listener, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import threading

HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"(?im)^content-length: *([0-9]{1,9})\r?$")


def answer(status: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(data)}\r\ncontent-type: application/json\r\n\r\n"
    return head.encode() + data


def verdict(request: dict, secret: bytes) -> bytes:
    signing_input, _, signature = request["token"].rpartition(".")
    expected = base64.urlsafe_b64encode(hmac.new(secret, signing_input.encode(), hashlib.sha512).digest())
    if not hmac.compare_digest(expected.rstrip(b"="), signature.encode()):
        return answer("403 Forbidden", {"reason": "bad_signature"})
    user, server_name = request["user"], request["server_name"]
    return answer(
        "200 OK",
        {
            "user_id": f"@{user}:{server_name}",
            "localpart": user,
            "may_register": False,
            "admin": None,
            "displayname": None,
            "update_displayname_on_login": True,
            "alg": "HS512",
            "kid": None,
            "key": "primary",
            "replay_key": None,
            "replay_until": None,
        },
    )


def serve(connection: socket.socket, secret: bytes) -> None:
    buffer = b""
    with connection:
        while data := connection.recv(65536):
            buffer += data
            while HEAD_END in buffer:
                head, _, rest = buffer.partition(HEAD_END)
                length = CONTENT_LENGTH.search(head)
                size = int(length.group(1)) if length else 0
                if len(rest) < size:
                    break
                body, buffer = rest[:size], rest[size:]
                connection.sendall(verdict(json.loads(body), secret))


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] != "-c" or sys.argv[3] != "serve":
        sys.exit(__doc__)
    config = open(sys.argv[2]).read()
    secret = re.search(r'^secret = "([^"]+)"', config, re.M)
    listen = re.search(r'"unix:([^"]+)"', config)
    if secret is None or listen is None:
        sys.exit(f"{sys.argv[2]}: needs `secret` and a `unix:` listener")
    path = listen.group(1)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=serve, args=(connection, secret.group(1).encode()), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
