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
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      # Built with Synapse's own Python, so that it lands on Synapse's interpreter.
      pythonShim = pkgs: pkgs.matrix-synapse-unwrapped.python.pkgs.callPackage ./nixos/python-package.nix { };
    in
    {
      # For those who want the packages in their own package set; the NixOS module does not
      # need it (and must not set nixpkgs.overlays: see nixos/module.nix).
      overlays.default = final: _prev: {
        synapse-token-auth = final.callPackage ./nixos/package.nix { };
        synapse-token-auth-python = pythonShim final;
      };

      packages = forAllSystems (pkgs: rec {
        default = synapse-token-auth;
        synapse-token-auth = pkgs.callPackage ./nixos/package.nix { };
        python-shim = pythonShim pkgs;
      });

      nixosModules.default = {
        imports = [ ./nixos/module.nix ];
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

      # What `make test` needs: the Rust toolchain; Synapse's Python with venv and pip (the Python
      # tests install the wheel, Synapse and pytest into a fresh virtualenv, and
      # python-shim/tools.sh its own maturin and ruff; both are here too for direct use);
      # systemd-socket-activate and unshare for the daemon's tests; the Nix checks' tools.
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.synapse-token-auth ];
          packages = [
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.maturin
            pkgs.ruff
            pkgs.oha
            pkgs.matrix-synapse-unwrapped.python
            pkgs.systemd
            pkgs.util-linux
            pkgs.deadnix
            pkgs.nixpkgs-fmt
            pkgs.nixfmt
          ];
          # pip's manylinux wheels (Synapse's Rust extension, cryptography) expect libgcc_s and
          # libstdc++ on the loader's path.
          env.LD_LIBRARY_PATH = lib.makeLibraryPath [ pkgs.stdenv.cc.cc.lib ];
        };
      });

      # nixfmt (RFC 166 style), nixpkgs' own formatter.
      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
