"""Configurations written for the original module (0.14.1) start unchanged; what it documents but
we do not serve (`epa`) and what it silently ignored (a misspelt key) stop Synapse, naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from homeserver import Homeserver
from synapse.config import ConfigError
from synapse_token_auth import TokenAuthenticator

FIXTURES = Path(__file__).parent / "fixtures" / "original"


def load(name: str) -> dict:
    return yaml.safe_load((FIXTURES / name).read_text())


def test_the_documented_oidc_section_parses():
    config = TokenAuthenticator.parse_config(load("oidc.yaml"))
    assert config.oidc is not None and config.oauth is None and config.verifier is None
    assert config.oidc.allow_registration is False


def test_every_documented_oauth_key_parses():
    config = TokenAuthenticator.parse_config(load("oauth.yaml"))
    assert config.oauth is not None
    assert config.oauth.checks_jwt and config.oauth.introspects and not config.oauth.fetches_keys
    effective = config.oauth.effective_config()
    assert "introspection-secret" not in effective and "webhook-token" not in effective


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda c: c.update(epa={"iss": "https://idp", "resource_id": "matrix"}), "`epa`"),
        (
            lambda c: c["oauth"]["jwt_validation"].update(required_scope="openid"),
            "`oauth.jwt_validation.required_scope`",
        ),
        (lambda c: c["oauth"].update(registration_enable=True), "`oauth.registration_enable`"),
    ],
)
def test_epa_and_misspelt_keys_are_named(change, needle):
    config = load("oauth.yaml")
    change(config)
    with pytest.raises(ConfigError) as e:
        TokenAuthenticator.parse_config(config)
    assert needle in str(e.value)


def test_synapse_refuses_to_start_and_names_the_key(tmp_path):
    config = load("oauth.yaml")
    config["oauth"]["introspection_validation"]["enpoint"] = "https://idp.example.org/typo"
    hs = Homeserver(tmp_path, config)
    with pytest.raises(AssertionError) as e:
        hs.start()
    assert "`oauth.introspection_validation.enpoint`: unknown key" in str(e.value)
