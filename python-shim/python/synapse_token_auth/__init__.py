"""JWT login (and optional registration) for Synapse, verified by a Rust core.

Load it in homeserver.yaml::

    modules:
      - module: synapse_token_auth.TokenAuthenticator
        config:
          secret_file: /etc/synapse/jwt-secret
          allow_registration: true
"""

from typing import TYPE_CHECKING, Any

__all__ = ["LOGIN_TYPE", "TokenAuthenticator"]

if TYPE_CHECKING:
    from synapse_token_auth.module import LOGIN_TYPE, TokenAuthenticator


def __getattr__(name: str) -> Any:
    # Imported on first use: the module needs Synapse, while the extension
    # (synapse_token_auth._native) and the config parser do not. Packaging checks and tools
    # import those without a Synapse around.
    if name in __all__:
        from synapse_token_auth import module

        return getattr(module, name)
    raise AttributeError(f"module 'synapse_token_auth' has no attribute {name!r}")
