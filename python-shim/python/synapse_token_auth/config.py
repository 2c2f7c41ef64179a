"""The module's configuration: validated once, when Synapse starts.

Embedded mode (the config holds a key) hands the whole mapping to the Rust core, which checks
every key and loads the key. Daemon mode (a ``verifier:`` section) keeps the policy and the key
in the verifier daemon; the module only needs to know where to reach it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from synapse_token_auth import _native

#: Default time to wait for the daemon, in seconds.
DEFAULT_DAEMON_TIMEOUT = 5.0
#: Longest accepted wait; a login should never hang for minutes.
MAX_DAEMON_TIMEOUT = 60.0


class ConfigError(Exception):
    """Raised for an invalid module config. Synapse refuses to start and prints it."""


def _config_error(message: str) -> Exception:
    # Synapse formats its own ConfigError best; fall back outside Synapse (unit tests, tools).
    try:
        from synapse.config import ConfigError as SynapseConfigError
    except ImportError:  # pragma: no cover - Synapse is always there when loaded as a module
        return ConfigError(message)
    return SynapseConfigError(message, ("modules", "synapse_token_auth"))


@dataclass(frozen=True)
class DaemonEndpoint:
    """Where the verifier daemon listens: a unix socket path or an http:// URL."""

    socket: str | None
    url: str | None
    timeout: float


@dataclass(frozen=True)
class ModuleConfig:
    """Exactly one of ``verifier`` (embedded mode) and ``daemon`` (daemon mode) is set."""

    verifier: _native.Verifier | None
    daemon: DaemonEndpoint | None

    @property
    def mode(self) -> str:
        return "embedded" if self.verifier is not None else "daemon"


def parse(config: Any) -> ModuleConfig:
    """Validates the ``config:`` mapping from homeserver.yaml; raises with every problem named."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise _config_error("the module config must be a mapping of keys")
    if "verifier" in config:
        return ModuleConfig(verifier=None, daemon=_parse_daemon(config))
    policy = config.get("jwt") if isinstance(config.get("jwt"), dict) else config
    if "jwks_ca_file" in policy:
        # Synapse's own HTTP client fetches the keys in embedded mode, with Synapse's trust store.
        raise _config_error(
            "`jwks_ca_file`: only the verifier daemon takes a CA file; in embedded mode keys are "
            "fetched by Synapse's HTTP client, which trusts the system's CA store"
        )
    try:
        verifier = _native.Verifier(json.dumps(config))
    except (TypeError, ValueError) as e:
        raise _config_error(str(e)) from None
    return ModuleConfig(verifier=verifier, daemon=None)


def _parse_daemon(config: dict[str, Any]) -> DaemonEndpoint:
    problems = []
    others = sorted(k for k in config if k != "verifier")
    if others:
        problems.append(
            f"`{'`, `'.join(others)}`: with a `verifier` section the policy and the key live in the "
            "verifier daemon's config.toml; remove these keys here"
        )
    section = config["verifier"]
    if not isinstance(section, dict):
        raise _config_error("`verifier`: expected a mapping with `socket` or `url`")
    unknown = sorted(set(section) - {"socket", "url", "timeout_seconds"})
    for key in unknown:
        problems.append(f"`verifier.{key}`: unknown key; known keys are socket, url, timeout_seconds")
    socket = section.get("socket")
    url = section.get("url")
    if (socket is None) == (url is None):
        problems.append("`verifier`: set exactly one of `socket` and `url`")
    if socket is not None and not (isinstance(socket, str) and socket.startswith("/")):
        problems.append("`verifier.socket`: expected an absolute path to a unix socket")
    if url is not None and not (isinstance(url, str) and url.startswith("http://")):
        problems.append("`verifier.url`: expected an http:// URL such as http://127.0.0.1:8008")
    timeout = section.get("timeout_seconds", DEFAULT_DAEMON_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout <= MAX_DAEMON_TIMEOUT):
        problems.append(
            f"`verifier.timeout_seconds`: expected a number of seconds between 0 and {MAX_DAEMON_TIMEOUT:g}"
        )
        timeout = DEFAULT_DAEMON_TIMEOUT
    if problems:
        raise _config_error(
            "invalid configuration in the `config` of the synapse_token_auth module in "
            "homeserver.yaml: " + "; ".join(problems)
        )
    return DaemonEndpoint(socket=socket, url=url.rstrip("/") if url else None, timeout=float(timeout))
