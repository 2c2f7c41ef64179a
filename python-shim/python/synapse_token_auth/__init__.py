"""JWT login (and optional registration) for Synapse, verified by a Rust core.

Load it in homeserver.yaml::

    modules:
      - module: synapse_token_auth.TokenAuthenticator
        config:
          secret_file: /etc/synapse/jwt-secret
          allow_registration: true
"""

from synapse_token_auth.module import LOGIN_TYPE, TokenAuthenticator

__all__ = ["LOGIN_TYPE", "TokenAuthenticator"]
