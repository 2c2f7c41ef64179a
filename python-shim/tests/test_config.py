"""parse_config: both layouts of the original module, our keys, daemon mode, and clear errors."""

import pytest
from helpers import KEYS, SECRET
from synapse.config import ConfigError
from synapse_token_auth import TokenAuthenticator


def test_config_accepts_original_flat_layout():
    config = TokenAuthenticator.parse_config(
        {"secret": SECRET, "algorithm": "HS512", "allow_registration": True, "require_expiracy": False}
    )
    assert config.mode == "embedded"
    assert '"allow_registration":true' in config.verifier.effective_config()
    assert '"require_expiry":false' in config.verifier.effective_config()


def test_config_accepts_nested_jwt_layout_and_keyfile():
    config = TokenAuthenticator.parse_config(
        {"jwt": {"keyfile": str(KEYS / "rsa.pub"), "algorithm": "RS256", "require_expiry": True}}
    )
    assert config.mode == "embedded"


def test_config_accepts_single_use_tokens_in_both_layouts():
    for config in (
        {"secret": SECRET, "single_use_tokens": True},
        {"jwt": {"secret": SECRET, "single_use_tokens": True}},
    ):
        verifier = TokenAuthenticator.parse_config(config).verifier
        assert verifier.single_use_tokens
        assert '"single_use_tokens":true' in verifier.effective_config()
    assert not TokenAuthenticator.parse_config({"secret": SECRET}).verifier.single_use_tokens


def test_config_never_echoes_the_secret():
    config = TokenAuthenticator.parse_config({"secret": SECRET})
    assert SECRET not in config.verifier.effective_config()
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config({"secret": "hunter2"})
    assert "hunter2" not in str(e.value)
    assert "`secret`" in str(e.value) and "64 bytes" in str(e.value)


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ({"secret": SECRET, "algoritm": "HS256"}, ["`algoritm`", "unknown key"]),
        ({"jwt": {"secret": SECRET}, "epa": {"iss": "https://idp"}}, ["`epa`", "not supported"]),
        ({"oauth": {"jwt_validaton": {}}}, ["`oauth.jwt_validaton`", "unknown key"]),
        (
            {"oauth": {"introspection_validation": {"endpoint": "https://idp/i"}}},
            ["`oauth.introspection_validation.localpart_path`", "names the user"],
        ),
        ({"oidc": {"issuer": "https://idp", "client_id": "c"}}, ["`oidc.client_secret`", "`oidc.project_id`"]),
        (
            {
                "verifier": {"socket": "/run/v.sock", "login_types": ["com.famedly.login.token.oauth"]},
                "oauth": {"introspection_validation": {"endpoint": "https://idp/i", "localpart_path": "sub"}},
            },
            ["`oauth`", "belongs in the daemon's config.toml"],
        ),
        ({"verifier": {"socket": "/run/v.sock", "login_types": ["oauth"]}}, ["`verifier.login_types`"]),
        ({"secret": SECRET, "algorithm": "none"}, ["`algorithm`", "never accepted"]),
        ({"secret": SECRET, "allow_registration": "yes"}, ["`allow_registration`", "true or false"]),
        ({"keyfile": "/nonexistent.pem", "algorithm": "RS256"}, ["`keyfile`", "/nonexistent.pem"]),
        ({}, ["no key configured"]),
        ("secret", ["mapping"]),
        ({"verifier": {"socket": "/run/v.sock"}, "secret": SECRET}, ["`secret`", "daemon"]),
        ({"verifier": {"socket": "/a", "url": "http://b"}}, ["exactly one"]),
        ({"verifier": {"url": "ftp://127.0.0.1:9"}}, ["`verifier.url`"]),
        ({"verifier": {"url": "http://127.0.0.1:99999"}}, ["`verifier.url`"]),
        ({"verifier": {"url": "http://u:p@127.0.0.1:9"}}, ["`verifier.url`"]),
        ({"verifier": {"socket": "/a", "timeout_seconds": 0}}, ["`verifier.timeout_seconds`"]),
        ({"verifier": {"socket": "/a", "retries": 3}}, ["`verifier.retries`"]),
        ({"jwks_url": "http://idp.example.org/jwks"}, ["`jwks_url`", "https"]),
        ({"jwt": {"oidc_issuer": "https://idp.example.org", "secret": SECRET}}, ["`jwt.secret`", "one key source"]),
        ({"oidc_issuer": "https://idp", "algorithm": "HS256"}, ["`algorithm`", "public keys only"]),
        ({"jwks_url": "https://idp/jwks", "jwks_ca_file": "/etc/ca.pem"}, ["`jwks_ca_file`", "daemon"]),
        ({"jwks_url": "https://idp/jwks", "jwks_fetch_timeout_seconds": 0}, ["`jwks_fetch_timeout_seconds`"]),
        (
            {"secret": SECRET, "single_use_tokens": True, "require_expiry": False},
            ["`single_use_tokens`", "requires `require_expiry`"],
        ),
        (
            {"jwt": {"secret": SECRET, "single_use_tokens": True, "require_expiracy": False}},
            ["`jwt.single_use_tokens`", "requires `require_expiry`"],
        ),
        ({"secret": SECRET, "single_use_tokens": "yes"}, ["`single_use_tokens`", "true or false"]),
    ],
)
def test_config_errors_name_the_key(config, needles):
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config(config)
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def test_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config({"secret": "short", "leeway_seconds": -5, "issuer": 3})
    text = str(e.value)
    assert "`secret`" in text and "`leeway_seconds`" in text and "`issuer`" in text


@pytest.mark.parametrize(
    "url", ["http://verifier.internal:8080", "http://10.0.0.5:8080", "http://0.0.0.0:8080", "http://[fe80::1]:80"]
)
def test_config_plain_http_only_to_loopback(url):
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config({"verifier": {"url": url}})
    assert "`verifier.url`" in str(e.value) and "loopback" in str(e.value), str(e.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://127.1.2.3:9", "http://[::1]:9", "http://localhost:9"])
def test_config_plain_http_to_loopback(url):
    assert TokenAuthenticator.parse_config({"verifier": {"url": url}}).daemon.url == url


@pytest.fixture
def tls_files(tmp_path):
    from tls import make_ca

    ca = make_ca(tmp_path, "verifier.internal")
    token_file = tmp_path / "client-token"
    token_file.write_text("s3cr3t-client-token\n")
    return ca.ca_file, token_file


def test_config_https_needs_a_ca_file_and_across_hosts_a_client_token(tls_files):
    ca_file, token_file = tls_files
    url = "https://verifier.internal:8443"
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config({"verifier": {"url": url}})
    assert "`verifier.ca_file`" in str(e.value) and "`verifier.client_token_file`" in str(e.value), str(e.value)
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config({"verifier": {"url": url, "ca_file": str(ca_file)}})
    assert "`verifier.client_token_file`" in str(e.value) and "`verifier.ca_file`" not in str(e.value)
    config = TokenAuthenticator.parse_config(
        {"verifier": {"url": url, "ca_file": str(ca_file), "client_token_file": str(token_file)}}
    )
    assert config.daemon.client_token == "s3cr3t-client-token", "one trailing newline stripped"
    assert len(config.daemon.ca_certificates) == 1
    assert "s3cr3t" not in repr(config)
    # On loopback the credential is optional, with https as with http and the socket.
    assert TokenAuthenticator.parse_config({"verifier": {"url": "https://localhost:8443", "ca_file": str(ca_file)}})
    config = TokenAuthenticator.parse_config(
        {"verifier": {"socket": "/run/v.sock", "client_token_file": str(token_file)}}
    )
    assert config.daemon.client_token == "s3cr3t-client-token"


@pytest.mark.parametrize(
    ("verifier", "key", "needle"),
    [
        ({"url": "https://h:1", "ca_file": "/nonexistent.pem"}, "ca_file", "/nonexistent.pem"),
        ({"url": "https://h:1", "ca_file": "relative.pem"}, "ca_file", "absolute"),
        ({"url": "https://h:1", "ca_file": "TOKEN"}, "ca_file", "no PEM certificate"),
        ({"url": "https://h:1", "ca_file": "BROKEN"}, "ca_file", "cannot be read"),
        ({"url": "http://127.0.0.1:1", "ca_file": "CA"}, "ca_file", "https"),
        ({"socket": "/a", "ca_file": "CA"}, "ca_file", "https"),
        ({"socket": "/a", "client_token_file": "/nonexistent"}, "client_token_file", "/nonexistent"),
        ({"socket": "/a", "client_token_file": "EMPTY"}, "client_token_file", "visible ASCII"),
        ({"socket": "/a", "client_token_file": "SPACED"}, "client_token_file", "visible ASCII"),
        ({"socket": "/a", "client_token_file": "TWO_NEWLINES"}, "client_token_file", "visible ASCII"),
    ],
)
def test_config_tls_and_credential_errors_name_the_key(tmp_path, tls_files, verifier, key, needle):
    ca_file, token_file = tls_files
    files = {
        "CA": str(ca_file),
        "TOKEN": str(token_file),
        "BROKEN": tmp_path / "broken.pem",
        "EMPTY": tmp_path / "empty",
        "SPACED": tmp_path / "spaced",
        "TWO_NEWLINES": tmp_path / "two-newlines",
    }
    files["BROKEN"].write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    files["EMPTY"].write_text("\n")
    files["SPACED"].write_text("two words\n")
    files["TWO_NEWLINES"].write_text("token\n\n")
    verifier = {k: str(files.get(v, v)) if k.endswith("_file") else v for k, v in verifier.items()}
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config({"verifier": {**verifier, "client_token_file": str(token_file), **verifier}})
    assert f"`verifier.{key}`" in str(e.value) and needle in str(e.value), str(e.value)
    assert "s3cr3t" not in str(e.value)


def test_config_daemon_mode():
    config = TokenAuthenticator.parse_config({"verifier": {"socket": "/run/synapse-token-auth/verify.sock"}})
    assert config.mode == "daemon"
    assert config.daemon.timeout == 5.0
    config = TokenAuthenticator.parse_config({"verifier": {"url": "http://127.0.0.1:9/", "timeout_seconds": 1.5}})
    assert config.daemon.url == "http://127.0.0.1:9"


def test_config_published_keys_fetch_in_embedded_mode():
    config = TokenAuthenticator.parse_config({"oidc_issuer": "https://idp.example.org/realms/x", "audiences": ["m"]})
    assert config.mode == "embedded" and config.verifier.fetches_keys
    assert '"oidc_issuer":"https://idp.example.org/realms/x"' in config.verifier.effective_config()
    assert not TokenAuthenticator.parse_config({"secret": SECRET}).verifier.fetches_keys


def test_compatibility_package_exposes_the_same_class():
    import synapse_token_authenticator

    assert synapse_token_authenticator.TokenAuthenticator is TokenAuthenticator
