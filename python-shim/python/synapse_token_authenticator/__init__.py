"""Compatibility name: homeserver.yaml entries written for the original
``synapse_token_authenticator.TokenAuthenticator`` keep working unchanged."""

from typing import Any

__all__ = ["TokenAuthenticator"]


def __getattr__(name: str) -> Any:
    if name == "TokenAuthenticator":
        from synapse_token_auth.module import TokenAuthenticator

        return TokenAuthenticator
    raise AttributeError(f"module 'synapse_token_authenticator' has no attribute {name!r}")
