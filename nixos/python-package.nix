# The Synapse module (pyo3 extension + Python package). Call it with Synapse's own Python package
# set, so it lands on the same interpreter: `matrix-synapse-unwrapped.python.pkgs.callPackage`.
{ lib, buildPythonPackage, rustPlatform }:

let
  source = import ./source.nix { inherit lib; };
in
buildPythonPackage {
  pname = "synapse-token-auth";
  inherit (source) version src;
  pyproject = true;

  cargoDeps = rustPlatform.importCargoLock { lockFile = ../Cargo.lock; };
  buildAndTestSubdir = "python-shim";
  nativeBuildInputs = [
    rustPlatform.cargoSetupHook
    rustPlatform.maturinBuildHook
  ];

  # The module itself imports Synapse, which is the host environment, not a dependency; the
  # extension, the config parser and the compatibility name import without it.
  pythonImportsCheck = [
    "synapse_token_auth._native"
    "synapse_token_auth.config"
    "synapse_token_authenticator"
  ];

  meta = {
    description = "Synapse module for JWT login (com.famedly.login.token), verified by a Rust core";
    homepage = source.repository;
    license = lib.licenses.agpl3Plus;
  };
}
