"""The module's configuration: validated once, when Synapse starts.

Embedded mode (the config holds a key) hands the whole mapping to the Rust core, which checks
every key and loads the key. Daemon mode (a ``verifier:`` section) keeps the policy and the key
in the verifier daemon; the module only needs to know where to reach it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from synapse_token_auth import _native

JWT_LOGIN_TYPE = "com.famedly.login.token"
#: Every login type the module serves.
LOGIN_TYPES = (JWT_LOGIN_TYPE, "com.famedly.login.token.oauth", "com.famedly.login.token.oidc")

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
    """Where the verifier daemon listens (a unix socket path or a URL), and how the module proves
    itself to it and checks it."""

    socket: str | None
    url: str | None
    timeout: float
    #: PEM blocks of the CAs trusted for an https:// URL (nothing else is).
    ca_certificates: tuple[bytes, ...] = ()
    #: Sent as ``Authorization: Bearer``; kept out of reprs.
    client_token: str | None = field(default=None, repr=False)
    #: The login types the daemon verifies for this module (`login_types`).
    login_types: tuple[str, ...] = (JWT_LOGIN_TYPE,)


@dataclass(frozen=True)
class ModuleConfig:
    """JWT login (``com.famedly.login.token``) is verified by ``verifier`` (embedded mode) or
    the daemon at ``daemon`` (daemon mode), or is off when neither is set; ``oauth`` and ``oidc``
    are the original module's other login types, when configured."""

    verifier: _native.Verifier | None
    daemon: DaemonEndpoint | None
    oauth: _native.OAuth | None = None
    oidc: _native.Oidc | None = None

    @property
    def mode(self) -> str:
        return "daemon" if self.daemon is not None else "embedded"


def parse(config: Any) -> ModuleConfig:
    """Validates the ``config:`` mapping from homeserver.yaml; raises with every problem named."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise _config_error("the module config must be a mapping of keys")
    if config.get("epa"):
        raise _config_error(
            "`epa`: the original module's ePA login type (encrypted JWE tokens) is not supported; remove the section"
        )
    config = {k: v for k, v in config.items() if k != "epa"}
    # As the original, a section that is present but empty (`oauth:` or `oauth: null`) is off.
    sections = {name: config.pop(name) for name in ("oauth", "oidc") if name in config}
    oauth = _parse_section(_native.OAuth, sections.get("oauth"))
    oidc = _parse_section(_native.Oidc, sections.get("oidc"))
    if "verifier" in config:
        # JWT login through the daemon; `oauth` and `oidc` logins still run in this process.
        in_process = tuple(name for name, section in (("oauth", oauth), ("oidc", oidc)) if section is not None)
        return ModuleConfig(verifier=None, daemon=_parse_daemon(config, in_process), oauth=oauth, oidc=oidc)
    if (oauth is not None or oidc is not None) and not any(v is not None for v in config.values()):
        # Only the other login types (a `jwt:` left empty counts as absent, as in the original).
        return ModuleConfig(verifier=None, daemon=None, oauth=oauth, oidc=oidc)
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
    return ModuleConfig(verifier=verifier, daemon=None, oauth=oauth, oidc=oidc)


def _parse_section(kind: Any, section: Any) -> Any:
    """The core's object for an `oauth` or `oidc` section, or None when it is absent or empty."""
    if not section:
        return None
    try:
        return kind(json.dumps(section))
    except (TypeError, ValueError) as e:
        raise _config_error(str(e)) from None


_DAEMON_KEYS = ("socket", "url", "timeout_seconds", "ca_file", "client_token_file", "login_types")
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)
# What a Bearer credential may hold without quoting (RFC 6750 b64token is a subset).
_CLIENT_TOKEN = re.compile(r"[\x21-\x7e]+")


def _parse_daemon(config: dict[str, Any], in_process: tuple[str, ...] = ()) -> DaemonEndpoint:
    """The `verifier` section; `in_process` names the sections (`oauth`, `oidc`) this process
    verifies itself."""
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
    unknown = sorted(set(section) - set(_DAEMON_KEYS))
    for key in unknown:
        problems.append(f"`verifier.{key}`: unknown key; known keys are {', '.join(_DAEMON_KEYS)}")
    socket = section.get("socket")
    url = section.get("url")
    if (socket is None) == (url is None):
        problems.append("`verifier`: set exactly one of `socket` and `url`")
    if socket is not None and not (isinstance(socket, str) and socket.startswith("/")):
        problems.append("`verifier.socket`: expected an absolute path to a unix socket")
    scheme, loopback = None, socket is not None
    if url is not None:
        scheme, loopback, problem = _check_url(url)
        if problem:
            problems.append(f"`verifier.url`: {problem}")
    timeout = section.get("timeout_seconds", DEFAULT_DAEMON_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout <= MAX_DAEMON_TIMEOUT):
        problems.append(
            f"`verifier.timeout_seconds`: expected a number of seconds between 0 and {MAX_DAEMON_TIMEOUT:g}"
        )
        timeout = DEFAULT_DAEMON_TIMEOUT

    ca_certificates: tuple[bytes, ...] = ()
    ca_file = section.get("ca_file")
    if scheme == "https" and ca_file is None:
        problems.append(
            "`verifier.ca_file`: required with an https:// `url`: the PEM file of the CA that signed "
            "the daemon's certificate (the system's CAs are not trusted for it)"
        )
    elif ca_file is not None and scheme != "https":
        problems.append("`verifier.ca_file`: only used with an https:// `url`; remove it")
    elif ca_file is not None:
        ca_certificates, problem = _read_ca_file(ca_file)
        if problem:
            problems.append(f"`verifier.ca_file`: {problem}")

    client_token = None
    token_file = section.get("client_token_file")
    if token_file is None and url is not None and scheme is not None and not loopback:
        problems.append(
            "`verifier.client_token_file`: required for a daemon on another host: the file with the "
            "token the daemon's `client_token_file` holds"
        )
    elif token_file is not None:
        client_token, problem = _read_client_token(token_file)
        if problem:
            problems.append(f"`verifier.client_token_file`: {problem}")

    login_types = section.get("login_types", [JWT_LOGIN_TYPE])
    if (
        not isinstance(login_types, list)
        or not login_types
        or not all(t in LOGIN_TYPES for t in login_types)
        or len(set(login_types)) != len(login_types)
    ):
        problems.append(f"`verifier.login_types`: expected a list of login types out of {', '.join(LOGIN_TYPES)}")
        login_types = [JWT_LOGIN_TYPE]
    for name, login_type in (("oauth", LOGIN_TYPES[1]), ("oidc", LOGIN_TYPES[2])):
        if login_type in login_types and name in in_process:
            problems.append(
                f"`{name}`: the daemon verifies {login_type} (`verifier.login_types`); its section "
                "belongs in the daemon's config.toml, remove it here"
            )

    if problems:
        raise _config_error(
            "invalid configuration in the `config` of the synapse_token_auth module in "
            "homeserver.yaml: " + "; ".join(problems)
        )
    return DaemonEndpoint(
        login_types=tuple(login_types),
        socket=socket,
        url=url.rstrip("/") if url else None,
        timeout=float(timeout),
        ca_certificates=ca_certificates,
        client_token=client_token,
    )


def _check_url(url: Any) -> tuple[str | None, bool, str | None]:
    """(scheme, whether the host is loopback, problem or None) of a `verifier.url`."""
    example = "expected http://127.0.0.1:PORT, or https://HOST:PORT for a daemon on another host"
    if not isinstance(url, str):
        return None, False, example
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as e:
        return None, False, f"{e}; {example}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, False, example
    if parts.username is not None or parts.query or parts.fragment:
        return None, False, "no user, query or fragment in the URL; " + example
    loopback = _is_loopback(parts.hostname)
    if parts.scheme == "http" and not loopback:
        return (
            None,
            False,
            "plain http:// only to a loopback host (127.0.0.0/8, ::1, localhost): across hosts use "
            "https:// with `ca_file` and `client_token_file`",
        )
    return parts.scheme, loopback, None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_ca_file(path: Any) -> tuple[tuple[bytes, ...], str | None]:
    if not isinstance(path, str) or not path.startswith("/"):
        return (), "expected the absolute path of a PEM file"
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        return (), f"cannot read {path}: {e.strerror}"
    blocks = tuple(m.group(0) for m in _PEM_CERTIFICATE.finditer(pem))
    if not blocks:
        return (), f"{path} holds no PEM certificate"
    from twisted.internet.ssl import Certificate

    for number, block in enumerate(blocks, 1):
        try:
            Certificate.loadPEM(block)
        except Exception:  # OpenSSL.crypto.Error and friends
            return (), f"certificate {number} in {path} cannot be read"
    return blocks, None


def _read_client_token(path: Any) -> tuple[str | None, str | None]:
    if not isinstance(path, str) or not path.startswith("/"):
        return None, "expected the absolute path of a file"
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
    except OSError as e:
        return None, f"cannot read {path}: {e.strerror}"
    text = raw.decode("latin-1").removesuffix("\n")
    # The token itself never appears in an error.
    if len(raw) > 4096 or not _CLIENT_TOKEN.fullmatch(text):
        return None, (
            f"{path} must hold one token of at most 4096 visible ASCII characters, no spaces "
            "(one trailing newline is ignored)"
        )
    return text, None
