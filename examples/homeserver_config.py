"""A minimal Synapse configuration for loopback and SQLite, with the JWT module loaded.

Used by the demo (`make demo`) and by the end-to-end tests, so both run the same setup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SERVER_NAME = "test.local"


MODULE = "synapse_token_auth.TokenAuthenticator"


def write(
    directory: Path,
    port: int,
    module_config: dict[str, Any] | None,
    *,
    module: str = MODULE,
    extra: dict[str, Any] | None = None,
    console_log: bool = False,
    listeners: tuple[dict[str, Any], ...] = (),
) -> Path:
    """Writes homeserver.yaml, its log config and a signing key into `directory`.

    `module_config` None loads no module; `extra` adds or overrides top-level settings (the
    benchmarks use it for Synapse's built-in `jwt_config`); `listeners` come after the client
    listener on `port` (replication, metrics)."""
    from signedjson.key import generate_signing_key, write_signing_keys

    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "signing.key"
    if not key.exists():
        with open(key, "w") as f:
            write_signing_keys(f, [generate_signing_key("a")])
    handlers: dict[str, Any] = {
        "file": {
            "class": "logging.FileHandler",
            "formatter": "precise",
            "filename": str(directory / "homeserver.log"),
        }
    }
    if console_log:
        handlers["console"] = {"class": "logging.StreamHandler", "formatter": "precise", "level": "INFO"}
    log_config = {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": handlers,
        "root": {"level": "WARNING", "handlers": list(handlers)},
        "loggers": {"synapse_token_auth": {"level": "INFO"}, "synapse_token_authenticator": {"level": "INFO"}},
        "disable_existing_loggers": False,
    }
    (directory / "log.yaml").write_text(json.dumps(log_config, indent=1))
    # Synapse's defaults answer 429 after a handful of logins from one address.
    relaxed = {"per_second": 10000, "burst_count": 100000}
    config = {
        "server_name": SERVER_NAME,
        "pid_file": str(directory / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            },
            *listeners,
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "log_config": str(directory / "log.yaml"),
        "media_store_path": str(directory / "media"),
        "signing_key_path": str(key),
        "macaroon_secret_key": "local-only",
        "form_secret": "local-only",
        "registration_shared_secret": "local-only-registration-secret",
        "report_stats": False,
        "enable_registration": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "rc_login": {"address": relaxed, "account": relaxed, "failed_attempts": relaxed},
        "rc_registration": relaxed,
        "rc_message": relaxed,
        "modules": [] if module_config is None else [{"module": module, "config": module_config}],
        **(extra or {}),
    }
    path = directory / "homeserver.yaml"
    # JSON is valid YAML: no YAML writer needed.
    path.write_text(json.dumps(config, indent=1))
    return path
