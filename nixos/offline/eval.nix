# Offline evaluation of nixos/module.nix with nixpkgs' lib.evalModules, asserting on the units
# and Synapse settings it generates. Runs where only nixpkgs' lib/ is available (no nixpkgs, no
# NixOS): the module is imported on its own (no overlay) into the NixOS stand-in
# (nixos/offline/nixos.nix) with the stand-in package set (nixos/offline/stand-in.nix), fixed and
# read-only as in a VM test. The full NixOS evaluation and the VM test are in
# nixos/tests/login.nix (run by `nix flake check`).
#
#   nix-instantiate --eval --strict nixos/offline/eval.nix --arg lib 'import /path/to/nixpkgs/lib'
{ lib }:

let
  pkgs = (import ./stand-in.nix { inherit lib; }).legacyPackages.x86_64-linux;
  nixos = import ./nixos.nix { inherit lib pkgs; };

  package = pkgs.callPackage ../package.nix { };
  pythonPackage = pkgs.matrix-synapse-unwrapped.python.pkgs.callPackage ../python-package.nix { };
  tomlFile = name: value: "${(pkgs.formats.toml { }).generate name value}";

  evaluate =
    config:
    (nixos.evalNixOS {
      modules = [
        ../module.nix
        { inherit config; }
      ];
    }).config;

  failedAssertions = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  # lib.hasInfix refuses strings that refer to store paths.
  noContext = builtins.unsafeDiscardStringContext;

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
    "imported alone, it builds its packages from pkgs (no overlay, read-only package set)" =
      !(pkgs ? synapse-token-auth)
      && base.services.synapse-token-auth.package == package
      && base.services.synapse-token-auth.pythonPackage == pythonPackage;
    "the packaged units are used, and the package ships both" =
      base.systemd.packages == [ package ]
      && package.systemdUnits == [
        "synapse-token-auth.socket"
        "synapse-token-auth.service"
      ];
    "ExecStart is reset before ours" = lib.head daemon.ExecStart == "";
    "the daemon's config is the settings plus the credential name, and no secret" =
      generated
      == "${package}/bin/synapse-token-auth --config ${
        tomlFile "synapse-token-auth.toml" (
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
      base.services.matrix-synapse.plugins == [ pythonPackage ]
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
      lib.elem "synapse-token-auth.socket" base.systemd.services.matrix-synapse.after
      && lib.elem "synapse-token-auth.socket" base.systemd.services.matrix-synapse.wants;
    "each Synapse worker starts after the socket, and runs the wrapper that has the plugin" =
      let
        c = evaluate {
          services.matrix-synapse = {
            enable = true;
            workers.client = { };
            workers.federation = { };
          };
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
          };
        };
        worker = name: c.systemd.services."matrix-synapse-worker-${name}";
      in
      lib.all
        (
          name:
          lib.elem "synapse-token-auth.socket" (worker name).after
          && lib.elem "synapse-token-auth.socket" (worker name).wants
          && lib.hasPrefix "${c.services.matrix-synapse.package}/bin/synapse_worker " (worker name).serviceConfig.ExecStart
        ) [ "client" "federation" ]
      && c.services.matrix-synapse.package.plugins == [ "${pythonPackage}" ];
    "each worker reads the shared homeserver.yaml, which holds the module entry" =
      let
        c = evaluate {
          services.matrix-synapse = {
            enable = true;
            settings.redis.enabled = true;
            workers.client = { };
          };
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
          };
        };
        homeserver = c.services.matrix-synapse.configFile;
      in
      failedAssertions c == [ ]
      && lib.hasInfix (noContext "--config-path ${homeserver} ") (
        noContext c.systemd.services.matrix-synapse-worker-client.serviceConfig.ExecStart
      )
      && (builtins.fromJSON homeserver.yaml).modules == [
        {
          module = "synapse_token_auth.TokenAuthenticator";
          config.verifier = {
            socket = "/run/synapse-token-auth/verify.sock";
            timeout_seconds = 5;
          };
        }
      ];
    "metrics: a loopback TCP listener for the scraper, Synapse's enable_metrics, a warning for a process serving logins unscraped" =
      let
        c = evaluate {
          services.matrix-synapse = {
            enable = true;
            settings.redis.enabled = true;
            # nixpkgs' default listeners: client and federation on 8008, no metrics listener.
            workers.client.worker_listeners = [
              {
                port = 8009;
                bind_addresses = [ "127.0.0.1" ];
                resources = [{ names = [ "client" ]; }];
              }
              {
                port = 9001;
                type = "metrics";
                resources = [ ];
              }
            ];
            workers.federation_sender = { };
          };
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
            metrics.enable = true;
          };
        };
      in
      failedAssertions c == [ ]
      && c.systemd.sockets.synapse-token-auth.listenStreams == [
        ""
        "/run/synapse-token-auth/verify.sock"
        "127.0.0.1:9745"
      ]
      && c.services.matrix-synapse.settings.enable_metrics
      # The main process serves logins without a metrics listener; the client worker has one;
      # the federation sender serves no logins.
      && lib.length c.warnings == 1
      && lib.hasInfix "Synapse's main process (services.matrix-synapse.settings.listeners) serves logins" (lib.replaceStrings [ "\n" ] [ " " ] (lib.head c.warnings))
      && !base.services.matrix-synapse.settings.enable_metrics
      && base.warnings == [ ];
    "metrics: on listenTcp no second listener; Synapse's enable_metrics can be turned off, with a warning" =
      let
        c = evaluate {
          services.matrix-synapse = {
            enable = true;
            settings.enable_metrics = false;
          };
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
            listenTcp = "127.0.0.1:8009";
            metrics.enable = true;
          };
        };
      in
      failedAssertions c == [ ]
      && c.systemd.sockets.synapse-token-auth.listenStreams == [
        ""
        "/run/synapse-token-auth/verify.sock"
        "127.0.0.1:8009"
      ]
      && !c.services.matrix-synapse.settings.enable_metrics
      && lib.any (lib.hasInfix "enable_metrics is") c.warnings;
    "metrics beyond loopback need TLS and a client token, like listenTcp" =
      let
        open = extra: evaluate {
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
            metrics = {
              enable = true;
              listen = "0.0.0.0:9745";
            };
          } // extra;
        };
        secured = open {
          tls.certificateFile = "/run/secrets/cert.pem";
          tls.keyFile = "/run/secrets/key.pem";
          clientTokenFile = "/run/secrets/token";
        };
      in
      lib.any (lib.hasInfix "services.synapse-token-auth.metrics.listen = \"0.0.0.0:9745\" is not a loopback address")
        (failedAssertions (open { }))
      && failedAssertions secured == [ ]
      && secured.systemd.sockets.synapse-token-auth.listenStreams == [
        ""
        "/run/synapse-token-auth/verify.sock"
        "0.0.0.0:9745"
      ];
    "settings carry the options and defaults" =
      base.services.synapse-token-auth.settings.allow_registration
      && base.services.synapse-token-auth.settings.algorithm == "HS512"
      && base.services.synapse-token-auth.settings.audiences == [ "my-matrix" ]
      && base.services.synapse-token-auth.settings.server.listen == [ "unix:/run/synapse-token-auth/verify.sock" ];
    "the socket group exists" = base.users.groups ? matrix-synapse;
    "without Synapse on the host, Synapse is left alone" =
      tcp.services.matrix-synapse.plugins == [ ] && !(tcp.services.matrix-synapse.settings ? modules);
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
      lib.any (lib.hasInfix "set exactly one key source")
        (failedAssertions (evaluate {
          services.synapse-token-auth.enable = true;
        }))
      && lib.any (lib.hasInfix "set exactly one key source") (failedAssertions (evaluate {
        services.synapse-token-auth = {
          enable = true;
          secretFile = "/run/a";
          keyFile = "/run/b";
        };
      }));
    "a TCP listener beyond loopback needs TLS and a client token, which become credentials" =
      let
        open = extra: evaluate {
          services.synapse-token-auth = {
            enable = true;
            secretFile = "/run/secrets/jwt";
            listenTcp = "0.0.0.0:8009";
          } // extra;
        };
        secured = open {
          tls.certificateFile = "/run/secrets/cert.pem";
          tls.keyFile = "/run/secrets/key.pem";
          clientTokenFile = "/run/secrets/token";
        };
      in
      lib.any (lib.hasInfix "tls.certificateFile, services.synapse-token-auth.tls.keyFile") (failedAssertions (open { }))
      && failedAssertions secured == [ ]
      && secured.systemd.services.synapse-token-auth.serviceConfig.LoadCredential == [
        ""
        "jwt-secret:/run/secrets/jwt"
        "tls-certificate:/run/secrets/cert.pem"
        "tls-key:/run/secrets/key.pem"
        "client-token:/run/secrets/token"
      ]
      && secured.services.synapse-token-auth.settings.server.tls_key_credential == "tls-key"
      && secured.services.synapse-token-auth.settings.server.client_token_credential == "client-token"
      && failedAssertions tcp == [ ];
    "keys from an identity provider: no credential, RS256, and outbound network for a fetched set only" =
      let
        discovery = evaluate {
          services.synapse-token-auth = {
            enable = true;
            settings.oidc_issuer = "https://idp.example.org/realms/x";
            settings.audiences = [ "matrix" ];
          };
        };
        file = evaluate {
          services.synapse-token-auth = {
            enable = true;
            settings.jwks_file = "/etc/synapse-token-auth/jwks.json";
          };
        };
        service = c: c.systemd.services.synapse-token-auth.serviceConfig;
      in
      failedAssertions discovery == [ ]
      && failedAssertions file == [ ]
      && (service discovery).LoadCredential == [ "" ]
      && discovery.services.synapse-token-auth.settings.algorithm == "RS256"
      && !(service discovery).PrivateNetwork
      && (service discovery).IPAddressDeny == ""
      && (service discovery).RestrictAddressFamilies == [ "AF_UNIX" "AF_INET" "AF_INET6" ]
      && !((service file) ? PrivateNetwork)
      && !((service base) ? PrivateNetwork)
      && lib.any (lib.hasInfix "set exactly one key source") (failedAssertions (evaluate {
        services.synapse-token-auth = {
          enable = true;
          secretFile = "/run/a";
          settings.jwks_url = "https://idp.example.org/jwks";
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
      == "${package}/bin/synapse-token-auth --config ${
        tomlFile "synapse-token-auth.toml" (
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
    "oauth through the daemon: no key, secrets as credentials, the login types in Synapse's module config, outbound network" =
      let
        c = evaluate {
          services.matrix-synapse.enable = true;
          services.synapse-token-auth = {
            enable = true;
            loginTypes = [ "com.famedly.login.token.oauth" ];
            credentials.introspection = "/run/secrets/introspection";
            settings.oauth.introspection_validation = {
              endpoint = "https://idp.example.org/introspect";
              localpart_path = "sub";
              auth = {
                type = "basic";
                username = "matrix";
                password_credential = "introspection";
              };
            };
          };
        };
        service = c.systemd.services.synapse-token-auth.serviceConfig;
        module = lib.head c.services.matrix-synapse.settings.modules;
      in
      failedAssertions c == [ ]
      && service.LoadCredential == [ "" "introspection:/run/secrets/introspection" ]
      && service.PrivateNetwork == false
      && module.config.verifier.login_types == [ "com.famedly.login.token.oauth" ];
    "credentials never come from the store, and JWT login still needs its key" =
      let
        messages = failedAssertions (evaluate {
          services.synapse-token-auth = {
            enable = true;
            credentials.introspection = "/nix/store/00000000000000000000000000000000-pw";
          };
        });
      in
      lib.any (lib.hasInfix "credentials must not point into the Nix store") messages
      && lib.any (lib.hasInfix "set exactly one key source") messages;
    "disabled means no units at all" =
      (evaluate { services.synapse-token-auth.secretFile = "/run/a"; }).systemd.services == { };
  };

  failed = lib.attrNames (lib.filterAttrs (_: ok: !ok) checks);
in
if failed == [ ] then
  "module evaluation: ${toString (lib.length (lib.attrNames checks))} checks passed"
else
  throw "module evaluation: failed checks: ${lib.concatStringsSep "; " failed}"
