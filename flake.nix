{
  description = "JWT login for the Synapse Matrix homeserver: verifier daemon, Synapse module and NixOS module";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f (nixpkgs.legacyPackages.${system}.extend self.overlays.default));
    in
    {
      overlays.default = final: _prev: {
        synapse-token-auth = final.callPackage ./nixos/package.nix { };
        # Built with Synapse's own Python, so that it lands on Synapse's interpreter.
        synapse-token-auth-python = final.matrix-synapse-unwrapped.python.pkgs.callPackage ./nixos/python-package.nix { };
      };

      packages = forAllSystems (pkgs: {
        default = pkgs.synapse-token-auth;
        inherit (pkgs) synapse-token-auth;
        python-shim = pkgs.synapse-token-auth-python;
      });

      nixosModules.default = {
        imports = [ ./nixos/module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };

      # Every nixos/tests/<name>.nix is a VM test; the packages build (and run their tests) too.
      checks = forAllSystems (
        pkgs:
        let
          tests = lib.mapAttrs'
            (
              file: _:
                lib.nameValuePair "vm-${lib.removeSuffix ".nix" file}" (
                  pkgs.testers.runNixOSTest (import ./nixos/tests/${file} { inherit self; })
                )
            )
            (lib.filterAttrs (file: type: type == "regular" && lib.hasSuffix ".nix" file) (builtins.readDir ./nixos/tests));
        in
        tests // self.packages.${pkgs.stdenv.hostPlatform.system}
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ pkgs.synapse-token-auth ];
          packages = [
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.maturin
            pkgs.oha
            # A Python that can import Synapse, for the module's tests.
            (pkgs.matrix-synapse-unwrapped.python.withPackages (ps: [
              (ps.toPythonModule pkgs.matrix-synapse-unwrapped)
              ps.pytest
              ps.cryptography
            ]))
            pkgs.deadnix
            pkgs.nixpkgs-fmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
