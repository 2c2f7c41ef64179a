# The source and version shared by the daemon package and the Python package: only what the
# builds read, so that editing docs or CI does not rebuild them.
{ lib }:

{
  inherit ((lib.importTOML ../Cargo.toml).package) version repository;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../benches
      ../tests
      ../examples/config.toml
      ../examples/oauth.toml
      ../dist
      ../python-shim
    ];
  };
}
