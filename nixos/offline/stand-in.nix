# A stand-in for nixpkgs, for checking this project's Nix files offline (no nixpkgs checkout and
# no binary cache here): nixpkgs' real lib, and a package set where every builder returns an
# unbuildable derivation, so that `nix flake show` and `nix flake check --no-build` evaluate the
# flake, package.nix and python-package.nix for real (file sets, Cargo.toml, attribute names)
# without building anything. `testers.runNixOSTest` is not a stub: it evaluates every node of the
# test with the NixOS stand-in (nixos/offline/nixos.nix) the way runNixOSTest does, with a fixed,
# read-only package set, and its derivation depends on the units each node generates, so that
# `nix flake check --no-build` evaluates them (and fails on a failed assertion or a bad option).
#
# Only what nixpkgs really has is here: a package that nixpkgs lacks (this project's own, for
# example) is missing here too.
{ lib }:

let
  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];

  packageSet =
    system: overlays: final:
    let
      stub =
        name: env:
        builtins.derivation
          (
            env
            // {
              inherit name system;
              builder = "/bin/sh";
              args = [
                "-c"
                "echo stand-in derivation, not buildable; exit 1"
              ];
            }
          )
        // {
          meta.mainProgram = name;
        };
      tool = name: stub name { };

      callPackageWith =
        scope: fn: args:
        let
          f = if builtins.isFunction fn then fn else import fn;
        in
        f (builtins.intersectAttrs (builtins.functionArgs f) scope // args);

      # The units a package installs, read from its install script (package.nix installs the
      # shipped units with `install -t $out/lib/systemd/system FILE...`).
      systemdUnitsOf =
        script:
        lib.concatMap
          (
            line:
            let
              m = builtins.match ".*-t [$]out/lib/systemd/system (.*)" line;
            in
            if m == null then [ ] else map baseNameOf (lib.filter (w: w != "") (lib.splitString " " (lib.head m)))
          )
          (lib.splitString "\n" script);

      format = generator: {
        type =
          with lib.types;
          let
            value = nullOr (oneOf [
              bool
              int
              float
              str
              path
              (attrsOf value)
              (listOf value)
            ]);
          in
          value;
        # The file's name depends on its content, so a check can tell which settings it holds.
        generate = name: value: stub name { "${generator}" = builtins.toJSON value; };
      };

      python = tool "python3" // {
        sitePackages = "lib/python3.13/site-packages";
        pkgs = {
          callPackage = callPackageWith (final // python.pkgs);
          buildPythonPackage = a: stub "python3.13-${a.pname}-${a.version}" { };
          toPythonModule = p: p;
          pytest = tool "python3.13-pytest";
          cryptography = tool "python3.13-cryptography";
        };
        withPackages = f: stub "python3-env" { packages = map toString (f python.pkgs); };
      };

      synapseWrapper =
        args:
        stub "matrix-synapse-wrapped" { plugins = map toString (args.plugins or [ ]); }
        // {
          unwrapped = final.matrix-synapse-unwrapped;
          override = newArgs: synapseWrapper (args // newArgs);
        };

      nixos = import ./nixos.nix {
        inherit lib;
        pkgs = final;
      };

      base = {
        _type = "pkgs";
        inherit lib overlays;
        __splicedPackages = final;
        config = { };
        extend = overlay: lib.fix (packageSet system (overlays ++ [ overlay ]));
        appendOverlays = extra: lib.fix (packageSet system (overlays ++ extra));
        callPackage = callPackageWith final;
        stdenv = {
          hostPlatform = {
            inherit system;
            isLinux = true;
          };
          buildPlatform = final.stdenv.hostPlatform;
          cc.cc.lib = tool "gcc-lib";
        };
        rustPlatform = {
          buildRustPackage =
            a:
            stub "${a.pname}-${a.version}" { }
            // {
              inherit (a) pname version;
              meta = a.meta or { };
              systemdUnits = systemdUnitsOf (a.postInstall or "");
            };
          importCargoLock = _: tool "cargo-vendor";
          cargoSetupHook = tool "cargo-setup-hook";
          maturinBuildHook = tool "maturin-build-hook";
        };
        matrix-synapse-unwrapped = stub "matrix-synapse" { } // {
          inherit python;
        };
        matrix-synapse = synapseWrapper { };
        formats = {
          toml = _: format "toml";
          yaml = _: format "yaml";
        };
        writeText = name: text: stub name { inherit text; };
        writeShellScriptBin = name: text: stub name { inherit text; };
        testers.runNixOSTest =
          test:
          let
            known = [
              "name"
              "nodes"
              "testScript"
              "defaults"
              "meta"
              "skipLint"
              "skipTypeCheck"
            ];
            unknown = lib.subtractLists known (lib.attrNames test);
            nodes = lib.mapAttrs
              (
                name: node:
                  nixos.evalNixOS {
                    readOnlyPkgs = true;
                    modules = [
                      {
                        _file = "runNixOSTest ${test.name}: nodes.${name}";
                        imports = [ node ];
                      }
                      (test.defaults or { })
                      { networking.hostName = lib.mkDefault name; }
                    ];
                  }
              )
              test.nodes;
            units = lib.mapAttrs (_: node: node.units) nodes;
          in
          if unknown != [ ] then
            throw "runNixOSTest: unknown attributes ${toString unknown}"
          else
            stub "vm-test-run-${test.name}"
              {
                units = builtins.toJSON units;
                inherit (test) testScript;
              }
            // {
              inherit nodes units;
            };
        mkShell = a: stub "dev-shell" { packages = map toString (a.packages or [ ]); };
        jemalloc = tool "jemalloc";
        coreutils = tool "coreutils";
        findutils = tool "findutils";
        gnugrep = tool "gnugrep";
        gnused = tool "gnused";
        systemd = tool "systemd";
        util-linux = tool "util-linux";
        curl = tool "curl";
        postgresql = tool "postgresql";
        redis = tool "redis";
        cargo = tool "cargo";
        clippy = tool "clippy";
        rustfmt = tool "rustfmt";
        maturin = tool "maturin";
        ruff = tool "ruff";
        oha = tool "oha";
        deadnix = tool "deadnix";
        nixpkgs-fmt = tool "nixpkgs-fmt";
        nixfmt = tool "nixfmt";
      };
    in
    lib.foldl' (prev: overlay: prev // overlay final prev) base overlays;
in
{
  inherit lib;
  legacyPackages = lib.genAttrs systems (system: lib.fix (packageSet system [ ]));
}
