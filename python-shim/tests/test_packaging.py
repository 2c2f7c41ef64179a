"""The wheel users install: everything a homeserver.yaml can name is in it, and the tests ran
against the installed copy rather than the source tree."""

import os
import zipfile
from pathlib import Path

import synapse_token_auth


def _wheel() -> Path:
    path = os.environ.get("SYNAPSE_TOKEN_AUTH_WHEEL")
    assert path, "run through python-shim/run-tests.sh, which builds the wheel and sets SYNAPSE_TOKEN_AUTH_WHEEL"
    return Path(path)


def test_wheel_contains_both_package_names_and_the_extension():
    names = zipfile.ZipFile(_wheel()).namelist()
    for required in [
        "synapse_token_auth/__init__.py",
        "synapse_token_auth/module.py",
        "synapse_token_auth/config.py",
        "synapse_token_auth/daemon_client.py",
        "synapse_token_auth/verdict.py",
        "synapse_token_auth/claims.py",
        "synapse_token_auth/reserved.py",
        "synapse_token_auth/logtext.py",
        "synapse_token_auth/accounts.py",
        "synapse_token_auth/oauth.py",
        "synapse_token_auth/outbound.py",
        "synapse_token_auth/published.py",
        "synapse_token_auth/replay.py",
        "synapse_token_auth/metrics.py",
        "synapse_token_auth/py.typed",
        "synapse_token_auth/_native.pyi",
        "synapse_token_authenticator/__init__.py",
    ]:
        assert required in names, f"{required} missing from {names}"
    assert any(n.startswith("synapse_token_auth/_native") and n.endswith(".so") for n in names), names


def test_wheel_is_abi3():
    assert "-abi3-" in _wheel().name, _wheel().name


def test_tests_import_the_installed_package():
    _wheel()
    assert "site-packages" in synapse_token_auth.__file__, synapse_token_auth.__file__
