# Offline evaluation of nixos/module.nix with nixpkgs' lib.evalModules, asserting on the units
# and Synapse settings it generates. Runs where only nixpkgs' lib/ is available (no nixpkgs, no
# NixOS): the few NixOS options the module sets are declared here as plain options, and `pkgs`
# is a stand-in with what the module uses (formats.toml, the two packages). The full NixOS
# evaluation and the VM test are in nixos/tests/login.nix (run by `nix flake check`).
#
#   nix-instantiate --eval --strict nixos/offline/eval.nix --arg lib 'import /path/to/nixpkgs/lib'
{ lib }:

let
  inherit (lib) mkOption types;

  fakePackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };

  storePathFor =
    name: value: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" (builtins.toJSON value))}-${name}";

  pkgs = {
    formats.toml = _: {
      type = types.attrsOf types.anything;
      # The real generator writes TOML. This one names the file after a hash of the value, so a
      # check can tell from ExecStart which settings the daemon was given.
      generate = name: value: storePathFor name value;
    };
    synapse-token-auth = fakePackage "synapse-token-auth";
    synapse-token-auth-python = fakePackage "synapse-token-auth-python";
  };

  # The NixOS options the module writes to, declared loosely.
  nixosStubs = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      systemd.packages = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      systemd.sockets = mkOption {
        type = types.attrsOf (types.attrsOf types.anything);
        default = { };
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.attrsOf types.anything);
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      services.matrix-synapse = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        plugins = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        settings = mkOption {
          type = types.submodule {
            freeformType = types.attrsOf types.anything;
            options.modules = mkOption {
              type = types.listOf types.anything;
              default = [ ];
            };
          };
          default = { };
        };
      };
    };
  };

  evaluate =
    config:
    (lib.evalModules {
      modules = [
        ../module.nix
        nixosStubs
        { inherit config; }
      ];
      specialArgs = { inherit pkgs; };
    }).config;

  failedAssertions = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);

  base = evaluate {
    services.matrix-synapse.enable = true;
    services.synapse-token-auth = {
      enable = true;
      secretFile = "/run/secrets/jwt";
      allowRegistration = true;
      settings.audiences = [ "my-matrix" ];
    };
  };
  daemon = base.systemd.services.synapse-token-auth.serviceConfig;
  socket = base.systemd.sockets.synapse-token-auth;
  generated = lib.elemAt daemon.ExecStart 1;

  tcp = evaluate {
    services.synapse-token-auth = {
      enable = true;
      keyFile = "/run/secrets/jwt.pem";
      listenTcp = "127.0.0.1:8009";
      openFirewall = true;
      settings.algorithm = "RS256";
    };
  };

  rotation = evaluate {
    services.synapse-token-auth = {
      enable = true;
      secretFile = "/run/secrets/jwt";
      additionalKeys = [
        { secretFile = "/run/secrets/jwt-old"; }
        {
          keyFile = "/run/secrets/idp.pem";
          algorithm = "RS256";
          keyId = "idp";
        }
      ];
    };
  };

  checks = {
    "no assertion fails for a good configuration" = failedAssertions base == [ ];
    "the packaged units are used" = base.systemd.packages == [ pkgs.synapse-token-auth ];
    "ExecStart is reset before ours" = lib.head daemon.ExecStart == "";
    "the daemon's config is the settings plus the credential name, and no secret" =
      generated
      == "/nix/store/00000000000000000000000000000000-synapse-token-auth/bin/synapse-token-auth --config ${
        storePathFor "synapse-token-auth.toml" (
          base.services.synapse-token-auth.settings // { secret_credential = "jwt-secret"; }
        )
      } serve";
    "the secret is a credential, read at run time from its path" =
      daemon.LoadCredential == [
        ""
        "jwt-secret:/run/secrets/jwt"
      ];
    "the socket listens on the unix path only, group matrix-synapse, 0660" =
      socket.listenStreams == [
        ""
        "/run/synapse-token-auth/verify.sock"
      ]
      && socket.socketConfig.SocketGroup == "matrix-synapse"
      && socket.socketConfig.SocketMode == "0660"
      && socket.wantedBy == [ "sockets.target" ];
    "Synapse gets the plugin and the module entry in daemon mode" =
      base.services.matrix-synapse.plugins == [ pkgs.synapse-token-auth-python ]
      && base.services.matrix-synapse.settings.modules == [
        {
          module = "synapse_token_auth.TokenAuthenticator";
          config.verifier = {
            socket = "/run/synapse-token-auth/verify.sock";
            timeout_seconds = 5;
          };
        }
      ];
    "Synapse starts after the socket" =
      base.systemd.services.matrix-synapse.after == [ "synapse-token-auth.socket" ]
      && base.systemd.services.matrix-synapse.wants == [ "synapse-token-auth.socket" ];
    "settings carry the options and defaults" =
      base.services.synapse-token-auth.settings.allow_registration
      && base.services.synapse-token-auth.settings.algorithm == "HS512"
      && base.services.synapse-token-auth.settings.audiences == [ "my-matrix" ]
      && base.services.synapse-token-auth.settings.server.listen == [ "unix:/run/synapse-token-auth/verify.sock" ];
    "the socket group exists" = base.users.groups ? matrix-synapse;
    "without Synapse on the host, Synapse is left alone" =
      tcp.services.matrix-synapse.plugins == [ ] && tcp.services.matrix-synapse.settings.modules == [ ];
    "a key file becomes the jwt-key credential" =
      tcp.systemd.services.synapse-token-auth.serviceConfig.LoadCredential == [
        ""
        "jwt-key:/run/secrets/jwt.pem"
      ];
    "a TCP listener is added and opened when asked" =
      tcp.systemd.sockets.synapse-token-auth.listenStreams == [
        ""
        "/run/synapse-token-auth/verify.sock"
        "127.0.0.1:8009"
      ]
      && tcp.networking.firewall.allowedTCPPorts == [ 8009 ];
    "a secret written into settings is refused" =
      lib.any (lib.hasInfix "world-readable Nix store") (failedAssertions (evaluate {
        services.synapse-token-auth = {
          enable = true;
          secretFile = "/run/secrets/jwt";
          settings.secret = "do-not-do-this";
        };
      }));
    "a secret file in the store is refused" =
      lib.any (lib.hasInfix "point into the Nix store") (failedAssertions (evaluate {
        services.synapse-token-auth = {
          enable = true;
          secretFile = "/nix/store/00000000000000000000000000000000-secret";
        };
      }));
    "no key, or two keys, is refused" =
      lib.any (lib.hasInfix "exactly one of secretFile and keyFile")
        (failedAssertions (evaluate {
          services.synapse-token-auth.enable = true;
        }))
      && lib.any (lib.hasInfix "exactly one of secretFile and keyFile") (failedAssertions (evaluate {
        services.synapse-token-auth = {
          enable = true;
          secretFile = "/run/a";
          keyFile = "/run/b";
        };
      }));
    "additional keys become credentials and additional_keys entries naming them" =
      rotation.systemd.services.synapse-token-auth.serviceConfig.LoadCredential == [
        ""
        "jwt-secret:/run/secrets/jwt"
        "jwt-additional-0:/run/secrets/jwt-old"
        "jwt-additional-1:/run/secrets/idp.pem"
      ]
      && lib.elemAt rotation.systemd.services.synapse-token-auth.serviceConfig.ExecStart 1
      == "/nix/store/00000000000000000000000000000000-synapse-token-auth/bin/synapse-token-auth --config ${
        storePathFor "synapse-token-auth.toml" (
          rotation.services.synapse-token-auth.settings
          // {
            secret_credential = "jwt-secret";
            additional_keys = [
              {
                secret_credential = "jwt-additional-0";
                algorithm = "HS512";
              }
              {
                keyfile_credential = "jwt-additional-1";
                algorithm = "RS256";
                key_id = "idp";
              }
            ];
          }
        )
      } serve"
      && failedAssertions rotation == [ ];
    "an additional key needs exactly one file, outside the store, and not in settings" =
      let
        messages = failedAssertions (evaluate {
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
            additionalKeys = [
              { }
              { keyFile = "/nix/store/00000000000000000000000000000000-old.pem"; }
            ];
            settings.additional_keys = [ ];
          };
        });
      in
      lib.any (lib.hasInfix "exactly one of secretFile and keyFile in each entry") messages
      && lib.any (lib.hasInfix "point into the Nix store") messages
      && lib.any (lib.hasInfix "generated from") messages;
    "disabled means no units at all" =
      (evaluate { services.synapse-token-auth.secretFile = "/run/a"; }).systemd.services == { };
  };

  failed = lib.attrNames (lib.filterAttrs (_: ok: !ok) checks);
in
if failed == [ ] then
  "module evaluation: ${toString (lib.length (lib.attrNames checks))} checks passed"
else
  throw "module evaluation: failed checks: ${lib.concatStringsSep "; " failed}"
