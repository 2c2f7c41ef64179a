"""The `oauth` login type against a minimal ModuleApi double of another Synapse version's shape:
`check_user_exists` answers a bool, `register_user` takes only a localpart. The module must read
the bool as "exists as built" / "absent" and pass only the arguments that carry a value."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from types import SimpleNamespace

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from synapse_token_auth import TokenAuthenticator
from test_module import run
from twisted.internet import defer

KEYS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "keys"
OAUTH = "com.famedly.login.token.oauth"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rs256(claims: dict) -> str:
    key = serialization.load_pem_private_key((KEYS / "rsa.key").read_bytes(), None)
    head = b64(json.dumps({"alg": "RS256", "kid": "k1"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(key.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256()))


def jwk() -> dict:
    public = serialization.load_pem_public_key((KEYS / "rsa.pub").read_bytes()).public_numbers()

    def num(n: int) -> str:
        return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "kid": "k1", "n": num(public.n), "e": num(public.e)}


class Api:
    """Only what the module calls, in the older shapes."""

    server_name = "test.local"

    def __init__(self, existing: set[str], external_ids: dict[str, list]) -> None:
        self.existing = existing
        self.registered: list[tuple] = []
        self.recorded: list[tuple] = []
        self._store = SimpleNamespace(
            get_app_services=lambda: [],
            get_external_ids_by_user=lambda user_id: defer.succeed(external_ids.get(user_id, [])),
        )

    def register_password_auth_provider_callbacks(self, auth_checkers) -> None:
        self.checkers = auth_checkers

    def register_web_resource(self, path, resource) -> None:
        pass

    def check_user_exists(self, user_id):
        return defer.succeed(user_id in self.existing)

    def register_user(self, localpart):
        self.registered.append((localpart,))
        self.existing.add(f"@{localpart}:test.local")
        return defer.succeed(f"@{localpart}:test.local")

    def record_user_external_id(self, auth_provider_id, remote_user_id, registered_user_id):
        self.recorded.append((auth_provider_id, remote_user_id, registered_user_id))
        return defer.succeed(None)

    async def get_userinfo_by_id(self, user_id):
        return SimpleNamespace(is_guest=False, appservice_id=None)


def module(api: Api) -> TokenAuthenticator:
    config = {
        "oauth": {
            "jwt_validation": {"jwk_set": {"keys": [jwk()]}, "localpart_path": "sub"},
            "registration_enabled": True,
        }
    }
    return TokenAuthenticator(TokenAuthenticator.parse_config(config), api)


def claims(sub: str, iss: str = "https://idp") -> dict:
    return {"sub": sub, "iss": iss, "exp": 4_000_000_000}


def test_only_the_oauth_type_is_registered_and_the_alias_works():
    api = Api(set(), {})
    m = module(api)
    assert list(api.checkers) == [(OAUTH, ("token",))]
    result = run(m.check_oauth("alice", OAUTH, {"token": rs256(claims("alice"))}))
    assert result == ("@alice:test.local", None)
    assert api.registered == [("alice",)]
    assert api.recorded == [("https://idp", "alice", "@alice:test.local")]


def test_a_bool_from_check_user_exists_means_exists_as_built():
    api = Api({"@bob:test.local"}, {"@bob:test.local": [("https://idp", "bob")]})
    m = module(api)
    assert run(m.check_oauth("bob", OAUTH, {"token": rs256(claims("bob"))}))[0] == "@bob:test.local"
    assert api.registered == []


def test_external_id_mismatch_is_refused(caplog):
    api = Api({"@bob:test.local"}, {"@bob:test.local": [("https://idp", "bob")]})
    m = module(api)
    with caplog.at_level(logging.INFO):
        assert run(m.check_oauth("bob", OAUTH, {"token": rs256(claims("bob", iss="https://other-idp"))})) is None
    assert "OAuth login rejected for @bob:test.local: external_id_mismatch" in caplog.text


def test_nothing_raises_into_synapse(caplog):
    api = Api(set(), {})
    m = module(api)
    for username, login in [(None, {"token": "x"}), ("alice", {"token": 3}), ("alice", {}), ("alice", {"token": "é"})]:
        assert run(m.check_oauth(username, OAUTH, login)) is None
    assert "internal_error" not in caplog.text
