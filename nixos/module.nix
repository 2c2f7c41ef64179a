# services.synapse-token-auth: the verifier daemon, its socket, its secret as a systemd
# credential, and (when Synapse runs on this host) the Synapse module in daemon mode.
#
# The units come from the package (systemd.packages): the same files the project tests under a
# real systemd; this module only adds drop-ins for what NixOS decides (paths, config, credential).
{ config
, lib
, pkgs
, ...
}:

let
  inherit (lib)
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    mkDefault
    optional
    optionals
    types
    literalExpression
    ;

  cfg = config.services.synapse-token-auth;
  format = pkgs.formats.toml { };

  # A key reaches the daemon only through LoadCredential=; the config names the credential.
  # `key` is the top-level options or an additionalKeys entry: both have secretFile and keyFile.
  credentialSetting =
    name: key:
    if key.secretFile != null then { secret_credential = name; } else { keyfile_credential = name; };
  loadCredential =
    name: key: "${name}:${if key.secretFile != null then key.secretFile else key.keyFile}";

  credential = if cfg.secretFile != null then "jwt-secret" else "jwt-key";

  # Keys an identity provider publishes: no secret to deliver, and for a fetched source the
  # daemon needs outbound HTTPS and DNS.
  publishedSources = [
    "jwks_url"
    "oidc_issuer"
    "jwks_file"
  ];
  published = lib.any (k: cfg.settings ? ${k}) publishedSources;
  fetchesKeys = cfg.settings ? jwks_url || cfg.settings ? oidc_issuer;
  staticKey = cfg.secretFile != null || cfg.keyFile != null;

  # Keys trusted beside the main one (a rotation), each its own credential.
  additionalCredential = i: "jwt-additional-${toString i}";
  additionalKeySettings = lib.imap0
    (
      i: k:
        credentialSetting (additionalCredential i) k
        // { inherit (k) algorithm; }
        // lib.optionalAttrs (k.keyId != null) { key_id = k.keyId; }
    )
    cfg.additionalKeys;

  jwtLogin = lib.elem "com.famedly.login.token" cfg.loginTypes;
  # The oauth and oidc types' requests go out to the identity provider and the webhook.
  otherLogins = cfg.settings ? oauth || cfg.settings ? oidc;

  # TLS and the client token of the TCP listener, each a credential.
  tlsSettings =
    lib.optionalAttrs (cfg.tls.certificateFile != null) { tls_certificate_credential = "tls-certificate"; }
    // lib.optionalAttrs (cfg.tls.keyFile != null) { tls_key_credential = "tls-key"; }
    // lib.optionalAttrs (cfg.clientTokenFile != null) { client_token_credential = "client-token"; };
  tlsCredentials =
    optional (cfg.tls.certificateFile != null) "tls-certificate:${cfg.tls.certificateFile}"
    ++ optional (cfg.tls.keyFile != null) "tls-key:${cfg.tls.keyFile}"
    ++ optional (cfg.clientTokenFile != null) "client-token:${cfg.clientTokenFile}";
  # Loopback: 127.0.0.0/8, [::1] and localhost, as the daemon decides.
  isLoopback =
    address:
    let
      host = lib.head (lib.splitString ":" (lib.removePrefix "tcp:" address));
    in
    lib.hasPrefix "127." host || lib.hasPrefix "[::1]" address || host == "localhost";

  # The daemon serves its whole API, /metrics included, on every listener: the metrics address
  # is one more TCP listener of the socket, unless it is listenTcp itself.
  tcpListeners = lib.unique (
    optional (cfg.listenTcp != null) cfg.listenTcp ++ optional cfg.metrics.enable cfg.metrics.listen
  );
  tcpOption =
    address:
    if address == cfg.listenTcp then "services.synapse-token-auth.listenTcp" else "services.synapse-token-auth.metrics.listen";

  # Synapse processes that serve logins (a listener with the `client` resource) without a
  # metrics listener: with metrics on, their share of the module's counters would not be served.
  synapse = config.services.matrix-synapse;
  hasResource = name: listener: lib.any (r: lib.elem name (r.names or [ ])) (listener.resources or [ ]);
  isMetrics = listener: (listener.type or "http") == "metrics";
  unscrapedSynapse =
    lib.optional
      (
        lib.any (hasResource "client") (synapse.settings.listeners or [ ])
        && !lib.any isMetrics (synapse.settings.listeners or [ ])
      ) "main process (services.matrix-synapse.settings.listeners)"
    ++ lib.concatLists (
      lib.mapAttrsToList
        (
          name: worker:
            lib.optional
              (
                lib.any (hasResource "client") (worker.worker_listeners or [ ])
                && !lib.any isMetrics (worker.worker_listeners or [ ])
              ) "worker ${name} (services.matrix-synapse.workers.${name}.worker_listeners)"
        )
        synapse.workers
    );

  configFile = format.generate "synapse-token-auth.toml" (
    cfg.settings
    // lib.optionalAttrs staticKey (credentialSetting credential cfg)
    // lib.optionalAttrs (cfg.additionalKeys != [ ]) { additional_keys = additionalKeySettings; }
  );

  keySources = [
    "secret"
    "secret_file"
    "secret_credential"
    "keyfile"
    "keyfile_credential"
  ];
  isStorePath = p: p != null && lib.hasPrefix builtins.storeDir (toString p);
in
{
  options.services.synapse-token-auth = {
    enable = mkEnableOption "the synapse-token-auth JWT verifier for Synapse";

    # Both default to a build from `pkgs` itself, not from an overlay: the module then works
    # imported on its own, and in systems whose package set is fixed and read-only
    # (`pkgs.testers.runNixOSTest`, `nixpkgs.nixosModules.readOnlyPkgs`), where a module may not
    # set `nixpkgs.overlays`.
    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The verifier daemon package (it also ships the systemd units).";
    };

    pythonPackage = mkOption {
      type = types.package;
      # The interpreter of the unwrapped Synapse: `services.matrix-synapse.package` is the wrapper,
      # itself built from `services.matrix-synapse.plugins`, which this package is added to.
      default = pkgs.matrix-synapse-unwrapped.python.pkgs.callPackage ./python-package.nix { };
      defaultText = literalExpression "pkgs.matrix-synapse-unwrapped.python.pkgs.callPackage ./python-package.nix { }";
      description = ''
        The Synapse module, built with Synapse's Python. Added to
        {option}`services.matrix-synapse.plugins` when {option}`services.synapse-token-auth.configureSynapse` is set.
      '';
    };

    secretFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/synapse-jwt-secret";
      description = ''
        File holding the HMAC secret (HS256/384/512). Read at run time by systemd with
        `LoadCredential=` and handed to the daemon only; never copied into the Nix store, and the
        daemon's `DynamicUser` need not be able to read the original path. Exactly one key source
        is set: this, {option}`services.synapse-token-auth.keyFile`, or keys an identity provider
        publishes (`settings.oidc_issuer`, `settings.jwks_url` or `settings.jwks_file`; the
        daemon then gets outbound network access for the first two, and nothing else changes).
      '';
    };

    keyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/synapse-jwt-public.pem";
      description = ''
        PEM public key, certificate or private key for RS*, PS*, ES* or EdDSA, delivered like
        {option}`services.synapse-token-auth.secretFile`. Set {option}`services.synapse-token-auth.settings.algorithm` to match.
      '';
    };

    additionalKeys = mkOption {
      default = [ ];
      description = ''
        Keys trusted beside {option}`services.synapse-token-auth.secretFile` or
        {option}`services.synapse-token-auth.keyFile`, for a key rotation: a token signed with any
        of them is accepted, and the journal names the key that accepted each login. Each file is
        delivered like the main key, through `LoadCredential=`.
      '';
      example = literalExpression ''
        [
          {
            keyFile = "/run/secrets/idp-2025.pem";
            algorithm = "RS256";
            keyId = "2025";
          }
        ]
      '';
      type = types.listOf (types.submodule {
        options = {
          secretFile = mkOption {
            type = types.nullOr types.str;
            default = null;
            description = "File holding an HMAC secret. Exactly one of this and `keyFile`.";
          };
          keyFile = mkOption {
            type = types.nullOr types.str;
            default = null;
            description = "PEM public key, certificate or private key.";
          };
          algorithm = mkOption {
            type = types.either types.str (types.listOf types.str);
            default = "HS512";
            description = "Algorithm(s) this key verifies; each must fit the key.";
          };
          keyId = mkOption {
            type = types.nullOr types.str;
            default = null;
            description = "When set, only tokens whose `kid` header equals it are checked against this key.";
          };
        };
      });
    };

    allowRegistration = mkOption {
      type = types.bool;
      default = false;
      description = "Create the account on the first valid login of an unknown user.";
    };

    socket = mkOption {
      type = types.str;
      default = "/run/synapse-token-auth/verify.sock";
      description = ''
        The unix socket Synapse connects to. It lives under /run because Synapse runs with
        `PrivateTmp`; it belongs to group {option}`services.synapse-token-auth.socketGroup`, mode 0660.
      '';
    };

    socketGroup = mkOption {
      type = types.str;
      default = "matrix-synapse";
      description = "Group allowed to connect to the socket: the group Synapse runs as.";
    };

    listenTcp = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "127.0.0.1:8009";
      description = ''
        Also listen on this TCP address, for Synapse workers on other hosts. Off by default: the
        unix socket is enough on one host. Beyond loopback the daemon serves TLS and requires a
        client token ({option}`services.synapse-token-auth.tls.certificateFile`,
        {option}`services.synapse-token-auth.tls.keyFile`,
        {option}`services.synapse-token-auth.clientTokenFile`); the remote hosts' module config then
        sets `verifier.url = "https://…"`, `verifier.ca_file` and `verifier.client_token_file`.
      '';
    };

    tls = {
      certificateFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/verifier-cert.pem";
        description = ''
          PEM certificate chain served on {option}`services.synapse-token-auth.listenTcp`
          (TLS); delivered with `LoadCredential=` like the key. Required, with
          {option}`services.synapse-token-auth.tls.keyFile` and
          {option}`services.synapse-token-auth.clientTokenFile`, when `listenTcp` is not a
          loopback address. The Synapse hosts trust its CA with `verifier.ca_file`.
        '';
      };
      keyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/verifier-key.pem";
        description = "PEM private key of {option}`services.synapse-token-auth.tls.certificateFile`.";
      };
    };

    clientTokenFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/verifier-client-token";
      description = ''
        File holding the bearer token every Synapse process must send (`verifier.client_token_file`
        in its module config); requests without it get 401. Delivered with `LoadCredential=`.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the port of {option}`services.synapse-token-auth.listenTcp` in the firewall.";
    };

    loginTypes = mkOption {
      type = types.nonEmptyListOf (types.enum [
        "com.famedly.login.token"
        "com.famedly.login.token.oauth"
        "com.famedly.login.token.oidc"
      ]);
      default = [ "com.famedly.login.token" ];
      example = [ "com.famedly.login.token.oauth" ];
      description = ''
        The login types the daemon verifies for Synapse (`verifier.login_types` in the module's
        config). The original module's `oauth` and `oidc` types take their configuration from
        {option}`services.synapse-token-auth.settings.oauth` and `.oidc`, with the keys of the
        configuration reference; their secrets come from
        {option}`services.synapse-token-auth.credentials`. Without `com.famedly.login.token` the
        daemon needs no key.
      '';
    };

    credentials = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = literalExpression ''{ introspection = "/run/secrets/introspection-password"; }'';
      description = ''
        Secret files delivered to the daemon with `LoadCredential=`, by name, and never copied into
        the Nix store. The settings name them: `password_credential = "introspection"` in an `auth`
        block of `settings.oauth`, `client_secret_credential` in `settings.oidc`.
      '';
    };

    metrics = {
      enable = mkEnableOption ''
        Prometheus metrics. The daemon serves `GET /metrics` (logins by result and reason code,
        verify latency, key fetches, reloads) on {option}`services.synapse-token-auth.metrics.listen`,
        a TCP address a scraper can reach (Prometheus cannot scrape a unix socket). With
        {option}`services.synapse-token-auth.configureSynapse`, Synapse's `enable_metrics` is also
        turned on, so that each Synapse process (the main one and every worker) serves the module's
        own counters, for the logins it served, on its `type = "metrics"` listener; a process that
        serves logins without such a listener gets a warning'';

      listen = mkOption {
        type = types.str;
        default = if cfg.listenTcp != null then cfg.listenTcp else "127.0.0.1:9745";
        defaultText = literalExpression ''
          if config.services.synapse-token-auth.listenTcp != null
          then config.services.synapse-token-auth.listenTcp
          else "127.0.0.1:9745"
        '';
        example = "127.0.0.1:9745";
        description = ''
          TCP address (`host:port`) on which Prometheus scrapes the daemon's `/metrics`. It is one
          more listener of the daemon's socket, and the daemon serves its whole API there, as on
          every listener. On loopback, `/metrics` and `POST /v1/verify` are open to local clients
          (verdicts change nothing; logins still go through Synapse); beyond loopback the daemon
          requires TLS and the client token, as for
          {option}`services.synapse-token-auth.listenTcp`, and Prometheus then sends that token
          (`authorization.credentials_file`). With a client token, `/metrics` over TCP needs it even
          on loopback.
        '';
      };
    };

    configureSynapse = mkOption {
      type = types.bool;
      default = config.services.matrix-synapse.enable;
      defaultText = literalExpression "config.services.matrix-synapse.enable";
      description = ''
        Add the module to {option}`services.matrix-synapse.plugins` and
        {option}`services.matrix-synapse.settings.modules` (daemon mode, this socket), and start
        Synapse and each of its {option}`services.matrix-synapse.workers` after the socket.
      '';
    };

    settings = mkOption {
      default = { };
      description = ''
        The verifier's configuration (config.toml), as in the
        [configuration reference](https://github.com/synapse-token-auth/synapse-token-auth/blob/main/docs/configuration.md).
        The key is not set here but with {option}`services.synapse-token-auth.secretFile` or
        {option}`services.synapse-token-auth.keyFile`.
      '';
      example = literalExpression ''
        {
          algorithm = "HS512";
          audiences = [ "my-matrix" ];
          issuer = "https://idp.example.org";
          leeway_seconds = 30;
        }
      '';
      type = types.submodule {
        freeformType = format.type;
        options = {
          algorithm = mkOption {
            type = types.either types.str (types.listOf types.str);
            default = if published then "RS256" else "HS512";
            defaultText = literalExpression ''"HS512", or "RS256" with keys an identity provider publishes'';
            description = "Accepted algorithm(s); each must fit the key.";
          };
          allow_registration = mkOption {
            type = types.bool;
            default = cfg.allowRegistration;
            defaultText = literalExpression "config.services.synapse-token-auth.allowRegistration";
            description = "Create unknown users on their first valid login.";
          };
          require_expiry = mkOption {
            type = types.bool;
            default = true;
            description = "Refuse tokens without `exp`. A present `exp` is always checked.";
          };
          server = {
            workers = mkOption {
              type = types.ints.between 1 64;
              default = 2;
              description = "Worker threads of the daemon.";
            };
          };
        };
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion =
            let
              sources = lib.length (lib.filter (x: x) [
                (cfg.secretFile != null)
                (cfg.keyFile != null)
                published
              ]);
            in
            # Without JWT login (only the oauth and oidc types) there is no key at all.
            if jwtLogin then sources == 1 else sources == 0;
          message = ''
            services.synapse-token-auth: set exactly one key source: secretFile, keyFile, or one of
            settings.${lib.concatStringsSep ", settings." publishedSources} (keys an identity provider publishes);
            none when loginTypes leaves out com.famedly.login.token.
          '';
        }
        {
          assertion = lib.all (k: !(cfg.settings ? ${k})) keySources;
          message = ''
            services.synapse-token-auth.settings must not name the key (${lib.concatStringsSep ", " keySources}):
            a secret written there would be copied into the world-readable Nix store.
            Use services.synapse-token-auth.secretFile or keyFile, which are read at run time.
          '';
        }
        {
          assertion = lib.all (k: (k.secretFile != null) != (k.keyFile != null)) cfg.additionalKeys;
          message = "services.synapse-token-auth.additionalKeys: set exactly one of secretFile and keyFile in each entry.";
        }
        {
          assertion = !(cfg.settings ? additional_keys);
          message = ''
            services.synapse-token-auth.settings.additional_keys is generated from
            services.synapse-token-auth.additionalKeys, which keeps the keys out of the Nix store.
          '';
        }
        {
          assertion = !lib.any isStorePath (
            [ cfg.secretFile cfg.keyFile ]
              ++ lib.concatMap (k: [ k.secretFile k.keyFile ]) cfg.additionalKeys
          );
          message = ''
            services.synapse-token-auth.secretFile/keyFile (or those of additionalKeys) point into the Nix store, where every
            user can read them. Give a path outside the store (for example one managed by agenix or sops-nix).
          '';
        }
        {
          assertion = !lib.any isStorePath (lib.attrValues cfg.credentials);
          message = ''
            services.synapse-token-auth.credentials must not point into the Nix store, where every
            user can read them; use a path such as /run/secrets/….
          '';
        }
        {
          assertion = cfg.openFirewall -> cfg.listenTcp != null;
          message = "services.synapse-token-auth.openFirewall needs services.synapse-token-auth.listenTcp.";
        }
      ]
      ++ map
        (address: {
          assertion =
            !isLoopback address
              -> cfg.tls.certificateFile != null && cfg.tls.keyFile != null && cfg.clientTokenFile != null;
          message = ''
            ${tcpOption address} = "${address}" is not a loopback address: login
            tokens would cross the network in clear text and anyone could ask for verdicts. Set
            services.synapse-token-auth.tls.certificateFile, services.synapse-token-auth.tls.keyFile and
            services.synapse-token-auth.clientTokenFile (the daemon refuses to start without them).
          '';
        })
        tcpListeners
      ++ [
        {
          assertion = (cfg.tls.certificateFile != null) == (cfg.tls.keyFile != null);
          message = "services.synapse-token-auth.tls: set both certificateFile and keyFile, or neither.";
        }
        {
          assertion = !lib.any isStorePath [ cfg.tls.keyFile cfg.clientTokenFile ];
          message = "services.synapse-token-auth.tls.keyFile and clientTokenFile must not point into the Nix store.";
        }
      ];

      systemd.packages = [ cfg.package ];

      systemd.sockets.synapse-token-auth = {
        wantedBy = [ "sockets.target" ];
        # "" resets the packaged ListenStream= before setting ours.
        listenStreams = [
          ""
          cfg.socket
        ]
        ++ tcpListeners;
        socketConfig = {
          SocketGroup = cfg.socketGroup;
          SocketMode = "0660";
        };
      };

      systemd.services.synapse-token-auth = {
        restartTriggers = [ configFile ];
        serviceConfig = {
          ExecStart = [
            ""
            "${lib.getExe cfg.package} --config ${configFile} serve"
          ];
          LoadCredential = [ "" ]
            ++ optional staticKey (loadCredential credential cfg)
            ++ lib.imap0 (i: loadCredential (additionalCredential i)) cfg.additionalKeys
            ++ tlsCredentials
            ++ lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;
        }
        # The same as dist/systemd/synapse-token-auth.service.d/fetch-keys.conf: outbound HTTPS
        # and DNS for a key set the daemon fetches, or for the oauth and oidc types' requests,
        # and only then.
        // lib.optionalAttrs (fetchesKeys || otherLogins) {
          PrivateNetwork = false;
          RestrictAddressFamilies = [
            "AF_UNIX"
            "AF_INET"
            "AF_INET6"
          ];
          IPAddressDeny = "";
        };
      };

      users.groups.${cfg.socketGroup} = { };

      networking.firewall.allowedTCPPorts = optionals (cfg.openFirewall && cfg.listenTcp != null) [
        (lib.toInt (lib.last (lib.splitString ":" cfg.listenTcp)))
      ];

      services.synapse-token-auth.settings.server = {
        listen = mkDefault [ "unix:${cfg.socket}" ];
      }
      // tlsSettings;
    }

    (mkIf (cfg.configureSynapse && cfg.metrics.enable) {
      # The module's counters are registered with prometheus_client in every Synapse process;
      # Synapse serves them on its metrics listeners only with this.
      services.matrix-synapse.settings.enable_metrics = mkDefault true;
      warnings =
        map
          (process: ''
            services.synapse-token-auth.metrics.enable: Synapse's ${process} serves logins but has no
            listener of type "metrics", so the module's counters of the logins it serves are not
            exported. Add one, for example
            { type = "metrics"; port = 9000; bind_addresses = [ "127.0.0.1" ]; tls = false; resources = [ ]; }
          '')
          unscrapedSynapse
        ++ lib.optional (!(synapse.settings.enable_metrics or false)) ''
          services.synapse-token-auth.metrics.enable: services.matrix-synapse.settings.enable_metrics is
          false, so no Synapse process exports the module's counters.
        '';
    })

    (mkIf cfg.configureSynapse {
      services.matrix-synapse = {
        plugins = [ cfg.pythonPackage ];
        settings.modules = [
          {
            module = "synapse_token_auth.TokenAuthenticator";
            config.verifier = {
              inherit (cfg) socket;
              timeout_seconds = 5;
            }
            // lib.optionalAttrs (cfg.loginTypes != [ "com.famedly.login.token" ]) {
              login_types = cfg.loginTypes;
            };
          }
        ];
      };
      # The main process and every worker (nixpkgs names their units
      # matrix-synapse-worker-<name>) load the module from the shared homeserver.yaml, and run the
      # same wrapper, so the plugin is on all their paths; each connects to the socket.
      systemd.services = lib.genAttrs
        (
          [ "matrix-synapse" ]
          ++ map (name: "matrix-synapse-worker-${name}") (lib.attrNames config.services.matrix-synapse.workers)
        )
        (_: {
          wants = [ "synapse-token-auth.socket" ];
          after = [ "synapse-token-auth.socket" ];
        });
    })
  ]);
}
