# The systemd unit files NixOS generates for this project's configurations, evaluated offline
# with the stand-ins (stand-in.nix, nixos.nix) and nixpkgs' real lib: each node of every VM test
# (through the flake's checks, so through runNixOSTest's read-only package set), and Synapse with
# workers. nixos/offline/check.sh writes them out and compares them with nixos/offline/units/,
# where they are checked in, so that `systemd-analyze verify` runs on them even where nixpkgs'
# lib is not available.
#
#   nix-instantiate --eval --strict --json nixos/offline/units.nix --arg lib 'import .../lib'
{ lib }:

let
  system = "x86_64-linux";
  nixpkgs = import ./stand-in.nix { inherit lib; };
  flake = (import ../../flake.nix).outputs {
    self = flake // {
      outPath = ../..;
    };
    inherit nixpkgs;
  };
  nixos = import ./nixos.nix {
    inherit lib;
    pkgs = nixpkgs.legacyPackages.${system};
  };

  vmTests = lib.filterAttrs (name: _: lib.hasPrefix "vm-" name) flake.checks.${system};
  nodes = lib.concatMapAttrs
    (
      test: check: lib.mapAttrs' (node: units: lib.nameValuePair "${test}-${node}" units) check.units
    )
    vmTests;

  workers =
    (nixos.evalNixOS {
      modules = [
        flake.nixosModules.default
        {
          services.matrix-synapse = {
            enable = true;
            settings.database.name = "sqlite3";
            settings.redis.enabled = true;
            workers = {
              client = { };
              federation = { };
            };
          };
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
          };
        }
      ];
    }).units;
in
nodes // { inherit workers; }
