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
        ({"jwt": {"secret": SECRET}, "oidc": {}}, ["`oidc`", "not supported"]),
        ({"secret": SECRET, "algorithm": "none"}, ["`algorithm`", "never accepted"]),
        ({"secret": SECRET, "allow_registration": "yes"}, ["`allow_registration`", "true or false"]),
        ({"keyfile": "/nonexistent.pem", "algorithm": "RS256"}, ["`keyfile`", "/nonexistent.pem"]),
        ({}, ["no key configured"]),
        ("secret", ["mapping"]),
        ({"verifier": {"socket": "/run/v.sock"}, "secret": SECRET}, ["`secret`", "daemon"]),
        ({"verifier": {"socket": "/a", "url": "http://b"}}, ["exactly one"]),
        ({"verifier": {"url": "https://b"}}, ["`verifier.url`"]),
        ({"verifier": {"socket": "/a", "timeout_seconds": 0}}, ["`verifier.timeout_seconds`"]),
        ({"verifier": {"socket": "/a", "retries": 3}}, ["`verifier.retries`"]),
        ({"jwks_url": "http://idp.example.org/jwks"}, ["`jwks_url`", "https"]),
        ({"jwt": {"oidc_issuer": "https://idp.example.org", "secret": SECRET}}, ["`jwt.secret`", "one key source"]),
        ({"oidc_issuer": "https://idp", "algorithm": "HS256"}, ["`algorithm`", "public keys only"]),
        ({"jwks_url": "https://idp/jwks", "jwks_ca_file": "/etc/ca.pem"}, ["`jwks_ca_file`", "daemon"]),
        ({"jwks_url": "https://idp/jwks", "jwks_fetch_timeout_seconds": 0}, ["`jwks_fetch_timeout_seconds`"]),
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
