"""Compatibility name: homeserver.yaml entries written for the original
``synapse_token_authenticator.TokenAuthenticator`` keep working unchanged."""

from synapse_token_auth import TokenAuthenticator

__all__ = ["TokenAuthenticator"]
