# A stand-in for the nixpkgs flake, for checking this flake offline (no nixpkgs checkout and no
# binary cache here). It provides nixpkgs' real lib (copied in by nixos/offline/check.sh) and a package
# set where every builder returns an unbuildable derivation, so that `nix flake show` and
# `nix flake check --no-build` evaluate our flake, package.nix and python-package.nix for real
# (file sets, Cargo.toml, attribute structure) without building anything.
{
  outputs =
    _:
    let
      lib = import ./lib;
      stubDerivation =
        system: name:
        builtins.derivation
          {
            inherit name system;
            builder = "/bin/sh";
            args = [
              "-c"
              "echo stand-in derivation, not buildable; exit 1"
            ];
          }
        // {
          meta.mainProgram = name;
        };
      packageSet =
        system: final:
        let
          stub = stubDerivation system;
          callPackageWith =
            scope: fn: args:
            let
              f = if builtins.isFunction fn then fn else import fn;
            in
            f (builtins.intersectAttrs (builtins.functionArgs f) scope // args);
          python = {
            pkgs = rec {
              callPackage = callPackageWith (final // python.pkgs);
              buildPythonPackage = a: stub "python3-${a.pname}-${a.version}";
              toPythonModule = p: p;
              pytest = stub "pytest";
              cryptography = stub "cryptography";
            };
            withPackages = _: stub "python3-env";
          };
        in
        {
          inherit lib;
          callPackage = callPackageWith final;
          stdenv.hostPlatform.system = system;
          rustPlatform = {
            buildRustPackage = a: stub "${a.pname}-${a.version}";
            importCargoLock = _: stub "cargo-vendor";
            cargoSetupHook = stub "cargo-setup-hook";
            maturinBuildHook = stub "maturin-build-hook";
          };
          matrix-synapse-unwrapped = stub "matrix-synapse" // {
            inherit python;
          };
          testers.runNixOSTest = test: stub "vm-test-${test.name}";
          mkShell = _: stub "dev-shell";
          coreutils = stub "coreutils";
          cargo = stub "cargo";
          clippy = stub "clippy";
          rustfmt = stub "rustfmt";
          maturin = stub "maturin";
          oha = stub "oha";
          deadnix = stub "deadnix";
          nixpkgs-fmt = stub "nixpkgs-fmt";
        };
      legacyPackagesFor =
        system:
        let
          base = final: packageSet system final;
          make =
            f:
            lib.fix f
            // {
              extend = overlay: make (lib.extends overlay f);
            };
        in
        make base;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
      ]
        legacyPackagesFor;
    };
}
