# The README's NixOS example, as a user would paste it: its flake's outputs are called with
# `nixosSystem` replaced by the NixOS stand-in (nixos/offline/nixos.nix, with the ordinary,
# mutable nixpkgs options) and this repository's flake as the `synapse-token-auth` input.
# Fails on a failed assertion, and when Synapse would use nixpkgs' default database (PostgreSQL)
# that the example does not set up: such a Synapse does not start.
#
#   nix-instantiate --eval --strict nixos/offline/readme.nix --arg lib ... --arg example FILE
{ lib, example }:

let
  system = "x86_64-linux";
  nixpkgs = import ./stand-in.nix { inherit lib; };
  pkgs = nixpkgs.legacyPackages.${system};
  nixos = import ./nixos.nix { inherit lib pkgs; };
  flake = (import ../../flake.nix).outputs {
    self = flake // {
      outPath = ../..;
    };
    inherit nixpkgs;
  };

  outputs = (import example).outputs {
    self = outputs;
    nixpkgs = nixpkgs // {
      lib = lib // {
        nixosSystem =
          args:
          nixos.evalNixOS {
            readOnlyPkgs = false;
            inherit (args) modules;
          };
      };
    };
    synapse-token-auth = flake;
  };
  configurations = outputs.nixosConfigurations;
  problems = lib.concatLists (
    lib.mapAttrsToList
      (
        name: evaluated:
          let
            synapse = evaluated.config.services.matrix-synapse;
          in
          # Forcing the units is building the system (assertions).
          builtins.seq (builtins.deepSeq evaluated.units null) (
            lib.optional (synapse.enable && synapse.settings.database.name == "psycopg2")
              "nixosConfigurations.${name}: Synapse uses PostgreSQL (nixpkgs' default) and nothing sets it up; set services.matrix-synapse.settings.database.name = \"sqlite3\" or configure services.postgresql"
            ++ lib.optional
              (
                !evaluated.config.services.synapse-token-auth.enable
              ) "nixosConfigurations.${name}: services.synapse-token-auth is not enabled"
          )
      )
      configurations
  );
in
if configurations == { } then
  throw "the README's NixOS example defines no nixosConfigurations"
else if problems == [ ] then
  "README's NixOS example: ${toString (lib.attrNames configurations)} evaluates, no failed assertion, database set"
else
  throw "README's NixOS example: ${lib.concatStringsSep "; " problems}"
