# A stand-in for the part of NixOS that nixos/module.nix and the VM test's nodes touch, so that
# they can be evaluated offline with nixpkgs' lib alone (there is no nixpkgs checkout here).
# Each piece models a nixpkgs file, named where it is defined:
#   - the fixed package set of VM test nodes: nixos/modules/misc/nixpkgs/read-only.nix, imported
#     by nixos/lib/testing/nodes.nix when node.pkgsReadOnly (runNixOSTest sets node.pkgs);
#   - unit options and unit files: nixos/lib/systemd-unit-options.nix, nixos/lib/systemd-lib.nix
#     (serviceToUnit, socketToUnit, generateUnits) and nixos/modules/system/boot/systemd.nix;
#   - Synapse: nixos/modules/services/matrix/synapse.nix (options, package wrapper, main and
#     worker units), abridged to what affects us;
#   - failed assertions stop the build of the system, as nixos/modules/system/activation/top-level.nix.
#
# evalNixOS { modules; readOnlyPkgs ? true; } -> { config; units; }
#   units: the files NixOS would put in /etc/systemd/system, as { "<path>" = { text = ...; } or
#   { link = ...; }; }.
{ lib, pkgs }:

let
  inherit (lib)
    mkOption
    mkOptionType
    mkIf
    mkMerge
    types
    ;

  # A unit setting: list values are concatenated across definitions, anything else must be
  # defined once (or equally), as systemd-unit-options.nix's unitOption.
  unitOption = mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  unitNames =
    description:
    mkOption {
      type = types.listOf types.str;
      default = [ ];
      inherit description;
    };

  commonUnitOptions = {
    enable = mkOption {
      type = types.bool;
      default = true;
    };
    description = mkOption {
      type = types.str;
      default = "";
    };
    documentation = unitNames "Documentation=";
    requires = unitNames "Requires=";
    wants = unitNames "Wants=";
    upholds = unitNames "Upholds=";
    after = unitNames "After=";
    before = unitNames "Before=";
    bindsTo = unitNames "BindsTo=";
    partOf = unitNames "PartOf=";
    conflicts = unitNames "Conflicts=";
    requisite = unitNames "Requisite=";
    onFailure = unitNames "OnFailure=";
    onSuccess = unitNames "OnSuccess=";
    wantedBy = unitNames "a <unit>.wants/ link";
    requiredBy = unitNames "a <unit>.requires/ link";
    upheldBy = unitNames "a <unit>.upholds/ link";
    aliases = unitNames "aliases";
    unitConfig = mkOption {
      type = types.attrsOf unitOption;
      default = { };
    };
    restartTriggers = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    reloadTriggers = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    overrideStrategy = mkOption {
      type = types.enum [
        "asDropinIfExists"
        "asDropin"
      ];
      default = "asDropinIfExists";
    };
  };

  # The [Unit] section NixOS derives from the options above (systemd-lib.nix, unitConfig).
  unitSection =
    name: def:
    let
      names = key: list: lib.optionalAttrs (list != [ ]) { ${key} = toString list; };
    in
    names "Requires" def.requires
    // names "Wants" def.wants
    // names "Upholds" def.upholds
    // names "After" def.after
    // names "Before" def.before
    // names "BindsTo" def.bindsTo
    // names "PartOf" def.partOf
    // names "Conflicts" def.conflicts
    // names "Requisite" def.requisite
    // lib.optionalAttrs (def.restartTriggers != [ ]) {
      X-Restart-Triggers = "${pkgs.writeText "X-Restart-Triggers-${name}" (toString def.restartTriggers)}";
    }
    // lib.optionalAttrs (def.reloadTriggers != [ ]) {
      X-Reload-Triggers = "${pkgs.writeText "X-Reload-Triggers-${name}" (toString def.reloadTriggers)}";
    }
    // lib.optionalAttrs (def.description != "") { Description = def.description; }
    // names "Documentation" def.documentation
    // names "OnFailure" def.onFailure
    // names "OnSuccess" def.onSuccess
    // def.unitConfig;

  jobScript =
    name: text:
    "${pkgs.writeShellScriptBin name ''
      set -e
      ${text}
    ''}/bin/${name}";

  serviceModule =
    { name, config, ... }:
    {
      options = commonUnitOptions // {
        serviceConfig = mkOption {
          type = types.attrsOf unitOption;
          default = { };
        };
        environment = mkOption {
          type =
            with types;
            attrsOf (
              nullOr (oneOf [
                str
                path
                package
              ])
            );
          default = { };
        };
        path = mkOption {
          type = types.listOf (types.either types.package types.str);
          default = [ ];
        };
        script = mkOption {
          type = types.lines;
          default = "";
        };
        scriptArgs = mkOption {
          type = types.str;
          default = "";
        };
        preStart = mkOption {
          type = types.lines;
          default = "";
        };
        postStart = mkOption {
          type = types.lines;
          default = "";
        };
        restartIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
        stopIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
      };
      config = mkMerge [
        {
          # The minimal default PATH of every service (systemd-lib.nix, stage2ServiceConfig).
          path = lib.mkAfter (
            with pkgs;
            [
              coreutils
              findutils
              gnugrep
              gnused
              systemd
            ]
          );
          environment.PATH = "${lib.makeBinPath config.path}:${lib.makeSearchPathOutput "bin" "sbin" config.path}";
        }
        (mkIf (config.preStart != "") {
          serviceConfig.ExecStartPre = [ (jobScript "${name}-pre-start" config.preStart) ];
        })
        (mkIf (config.script != "") {
          serviceConfig.ExecStart = jobScript "${name}-start" config.script + " " + config.scriptArgs;
        })
        (mkIf (config.postStart != "") {
          serviceConfig.ExecStartPost = [ (jobScript "${name}-post-start" config.postStart) ];
        })
      ];
    };

  socketModule = {
    options = commonUnitOptions // {
      socketConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      listenStreams = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      listenDatagrams = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
    };
  };

  targetModule = {
    options = commonUnitOptions;
  };

  # systemd-lib.nix: attrsToSection, commonUnitText, serviceToUnit, socketToUnit, targetToUnit.
  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;
  attrsToSection =
    as:
    lib.concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (name: value: map (x: "${name}=${toOption x}\n") (lib.toList value)) as
      )
    );
  commonUnitText =
    name: def: lines:
    ''
      [Unit]
      ${attrsToSection (unitSection name def)}
    ''
    + lines
    + lib.optionalString (def.wantedBy != [ ]) ''

      [Install]
      WantedBy=${lib.concatStringsSep " " def.wantedBy}
    '';
  serviceText =
    name: def:
    commonUnitText name def (
      ''
        [Service]
      ''
      + lib.concatMapStrings (n: "Environment=${builtins.toJSON "${n}=${def.environment.${n}}"}\n") (
        lib.attrNames (lib.filterAttrs (_: v: v != null) def.environment)
      )
      + lib.optionalString (!def.restartIfChanged) "X-RestartIfChanged=false\n"
      + lib.optionalString (!def.stopIfChanged) "X-StopIfChanged=false\n"
      + attrsToSection def.serviceConfig
    );
  socketText =
    name: def:
    commonUnitText name def ''
      [Socket]
      ${attrsToSection def.socketConfig}
      ${lib.concatStringsSep "\n" (map (s: "ListenStream=${s}") def.listenStreams)}
      ${lib.concatStringsSep "\n" (map (s: "ListenDatagram=${s}") def.listenDatagrams)}
    '';
  targetText = name: def: commonUnitText name def "";

  # generateUnits: units shipped by systemd.packages are linked in; a unit the configuration
  # also defines becomes <unit>.d/overrides.conf beside it; wantedBy/requiredBy/upheldBy become
  # links in <target>.wants/, .requires/, .upholds/. The stand-in packages say which units
  # they ship in `systemdUnits` (nixos/offline/stand-in.nix reads it from package.nix).
  unitFiles =
    config:
    let
      packaged = lib.listToAttrs (
        lib.concatMap
          (
            pkg:
            map (unit: lib.nameValuePair unit "${pkg}/lib/systemd/system/${unit}") (pkg.systemdUnits or [ ])
          )
          config.systemd.packages
      );
      defined =
        lib.mapAttrs' (n: v: lib.nameValuePair "${n}.service" (v // { text = serviceText n v; }))
          (
            lib.filterAttrs (_: v: v.enable) config.systemd.services
          )
        // lib.mapAttrs' (n: v: lib.nameValuePair "${n}.socket" (v // { text = socketText n v; })) (
          lib.filterAttrs (_: v: v.enable) config.systemd.sockets
        )
        // lib.mapAttrs' (n: v: lib.nameValuePair "${n}.target" (v // { text = targetText n v; })) (
          lib.filterAttrs (_: v: v.enable) config.systemd.targets
        );
      links =
        suffix: attr:
        lib.concatLists (
          lib.mapAttrsToList
            (
              unit: def: map (target: lib.nameValuePair "${target}.${suffix}/${unit}" { link = "../${unit}"; }) def.${attr}
            )
            defined
        );
    in
    lib.mapAttrs (_: target: { link = target; }) packaged
    // lib.listToAttrs (
      lib.mapAttrsToList
        (
          unit: def:
          if packaged ? ${unit} && def.overrideStrategy == "asDropinIfExists" || def.overrideStrategy == "asDropin" then
            lib.nameValuePair "${unit}.d/overrides.conf" { inherit (def) text; }
          else
            lib.nameValuePair unit { inherit (def) text; }
        )
        defined
    )
    // lib.listToAttrs (links "wants" "wantedBy" ++ links "requires" "requiredBy" ++ links "upholds" "upheldBy");

  # nixos/modules/misc/nixpkgs/read-only.nix: the package set is given (nixpkgs.pkgs) and the
  # nixpkgs.* options only reflect it. nixpkgs.overlays is `unique`: the package set's own
  # overlays are its one definition, so a module that adds an overlay is a second definition,
  # and the evaluation fails ("is set to read-only").
  readOnlyNixpkgs =
    { config, ... }:
    let
      cfg = config.nixpkgs;
      readOnly =
        what:
        mkOption {
          internal = true;
          type = types.unique { message = "nixpkgs.${what} is set to read-only"; } types.anything;
        };
    in
    {
      _file = "nixos/offline/nixos.nix, standing in for nixos/modules/misc/nixpkgs/read-only.nix";
      options.nixpkgs = {
        pkgs = mkOption { type = types.pkgs; };
        config = readOnly "config";
        overlays = readOnly "overlays";
        hostPlatform = mkOption {
          internal = true;
          readOnly = true;
        };
        buildPlatform = mkOption {
          internal = true;
          readOnly = true;
        };
      };
      config = {
        _module.args.pkgs = builtins.seq cfg.config (
          builtins.seq cfg.overlays (
            builtins.seq cfg.hostPlatform (builtins.seq cfg.buildPlatform cfg.pkgs.__splicedPackages)
          )
        );
        nixpkgs.config = cfg.pkgs.config;
        nixpkgs.overlays = cfg.pkgs.overlays;
        nixpkgs.hostPlatform = cfg.pkgs.stdenv.hostPlatform;
        nixpkgs.buildPlatform = cfg.pkgs.stdenv.buildPlatform;
      };
    };

  # nixos/modules/misc/nixpkgs.nix, reduced: overlays are a list that every module may add to,
  # applied to the package set.
  mutableNixpkgs =
    { config, ... }:
    {
      options.nixpkgs.overlays = mkOption {
        type = types.listOf (types.uniq (types.functionTo (types.functionTo types.unspecified)));
        default = [ ];
      };
      config._module.args.pkgs = pkgs.appendOverlays config.nixpkgs.overlays;
    };

  # The NixOS options the module, the VM test and the Synapse stand-in write to.
  baseOptions = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      system.stateVersion = mkOption {
        type = types.str;
        default = lib.trivial.release;
      };
      networking.hostName = mkOption {
        type = types.str;
        default = "nixos";
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      systemd.packages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule serviceModule);
        default = { };
      };
      systemd.sockets = mkOption {
        type = types.attrsOf (types.submodule socketModule);
        default = { };
      };
      systemd.targets = mkOption {
        type = types.attrsOf (types.submodule targetModule);
        default = { };
      };
      users.users = mkOption {
        type = types.attrsOf (types.submodule { freeformType = types.attrsOf types.anything; });
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf (types.submodule { freeformType = types.attrsOf types.anything; });
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.text = mkOption {
              type = types.nullOr types.lines;
              default = null;
            };
            options.source = mkOption {
              type = types.nullOr types.path;
              default = null;
            };
          }
        );
        default = { };
      };
      # nixos/modules/virtualisation/qemu-vm.nix, which VM test nodes import.
      virtualisation.memorySize = mkOption {
        type = types.ints.positive;
        default = 1024;
      };
    };
  };

  # nixos/modules/services/matrix/synapse.nix, abridged: the options this project reads or
  # writes (listeners with their types and defaults, workers, Redis, the database), the read-only
  # `package` (the wrapper built with `plugins`) and `configFile`, the assertions a configuration
  # with workers must pass, and the units of the main process and of each worker with the
  # settings that order them.
  synapse =
    { config, ... }:
    let
      cfg = config.services.matrix-synapse;
      format = pkgs.formats.yaml { };
      hasWorkers = cfg.workers != { };
      filterRecursiveNull =
        o:
        if lib.isAttrs o then
          lib.mapAttrs (_: filterRecursiveNull) (lib.filterAttrs (_: v: v != null) o)
        else if lib.isList o then
          map filterRecursiveNull (lib.filter (v: v != null) o)
        else
          o;
      configFile = format.generate "homeserver.yaml" (filterRecursiveNull cfg.settings);
      args = cfg.settings.database.args or { };
      hasLocalPostgresDB =
        cfg.settings.database.name == "psycopg2"
        && (
          !(args ? host)
          || lib.elem args.host [
            "localhost"
            "127.0.0.1"
            "::1"
          ]
        )
        && config.services.postgresql.enable;

      # The listener submodule (listenerType), with its defaults; `workerContext` decides `tls`.
      listenerType =
        workerContext:
        types.submodule (
          { config, ... }:
          {
            options = {
              port = mkOption {
                type = types.nullOr types.port;
                default = null;
              };
              bind_addresses = mkOption {
                type = types.nullOr (types.listOf types.str);
                default =
                  if config.path != null then
                    null
                  else
                    [
                      "::1"
                      "127.0.0.1"
                    ];
              };
              path = mkOption {
                type = types.nullOr types.path;
                default = null;
              };
              mode = mkOption {
                type = types.nullOr (types.strMatching "^[0,2-7]{3,4}$");
                default = if config.path != null then "660" else null;
                # toDecimalFilePermission: Synapse reads the mode as a number.
                apply = mode: if mode == null then null else lib.foldl (acc: digit: acc * 8 + lib.toInt digit) 0 (lib.stringToCharacters mode);
              };
              type = mkOption {
                type = types.enum [
                  "http"
                  "manhole"
                  "metrics"
                  "replication"
                ];
                default = "http";
              };
              tls = mkOption {
                type = types.nullOr types.bool;
                default = if config.path != null then null else !workerContext;
              };
              x_forwarded = mkOption {
                type = types.bool;
                default = config.path != null;
              };
              resources = mkOption {
                type = types.listOf (
                  types.submodule {
                    options = {
                      names = mkOption {
                        type = types.listOf (
                          types.enum [
                            "client"
                            "consent"
                            "federation"
                            "health"
                            "keys"
                            "media"
                            "metrics"
                            "openid"
                            "replication"
                            "static"
                          ]
                        );
                      };
                      compress = mkOption {
                        type = types.bool;
                        default = false;
                      };
                    };
                  }
                );
              };
            };
          }
        );
      listenerSupportsResource =
        resource: listener: lib.any ({ names, ... }: builtins.elem resource names) listener.resources;
      clientListener = lib.findFirst (listenerSupportsResource "client") null (
        cfg.settings.listeners ++ lib.concatMap ({ worker_listeners, ... }: worker_listeners) (lib.attrValues cfg.workers)
      );

      base = {
        environment = {
          LD_PRELOAD = "${pkgs.jemalloc}/lib/libjemalloc.so";
          PYTHONMALLOC = "malloc";
        };
        serviceConfig = {
          Type = "notify";
          User = "matrix-synapse";
          Group = "matrix-synapse";
          WorkingDirectory = cfg.dataDir;
          RuntimeDirectory = "matrix-synapse";
          RuntimeDirectoryPreserve = true;
          ExecReload = "${pkgs.util-linux}/bin/kill -HUP $MAINPID";
          Restart = "on-failure";
          UMask = "0077";
          PrivateTmp = true;
          PrivateUsers = true;
          ProtectSystem = "strict";
          ReadWritePaths = [
            cfg.dataDir
          ]
          ++ map (listener: dirOf listener.path) (lib.filter (listener: listener.path != null) cfg.settings.listeners);
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
            "AF_UNIX"
          ];
        };
      }
      // (
        if hasWorkers then
          {
            partOf = [ "matrix-synapse.target" ];
            wantedBy = [ "matrix-synapse.target" ];
            unitConfig.ReloadPropagatedFrom = "matrix-synapse.target";
            requires = lib.optional hasLocalPostgresDB "postgresql.target";
          }
        else
          {
            wants = [ "network-online.target" ];
            after = [ "network-online.target" ] ++ lib.optional hasLocalPostgresDB "postgresql.target";
            requires = lib.optional hasLocalPostgresDB "postgresql.target";
            wantedBy = [ "multi-user.target" ];
          }
      );
      configPaths = files: lib.concatMapStringsSep " " (f: "--config-path ${f}") files;
    in
    {
      options.services.matrix-synapse = {
        enable = lib.mkEnableOption "Synapse";
        package = mkOption {
          type = types.package;
          readOnly = true;
        };
        configFile = mkOption {
          type = types.path;
          readOnly = true;
        };
        plugins = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        dataDir = mkOption {
          type = types.str;
          default = "/var/lib/matrix-synapse";
        };
        extraConfigFiles = mkOption {
          type = types.listOf types.path;
          default = [ ];
        };
        configureRedisLocally = mkOption {
          type = types.bool;
          default = false;
        };
        settings = mkOption {
          default = { };
          type = types.submodule {
            freeformType = format.type;
            options = {
              server_name = mkOption {
                type = types.str;
                default = config.networking.hostName;
              };
              enable_metrics = mkOption {
                type = types.bool;
                default = false;
              };
              database.name = mkOption {
                type = types.enum [
                  "sqlite3"
                  "psycopg2"
                ];
                default = if lib.versionAtLeast config.system.stateVersion "18.03" then "psycopg2" else "sqlite3";
              };
              listeners = mkOption {
                type = types.listOf (listenerType false);
                default = [
                  {
                    port = 8008;
                    bind_addresses = [ "127.0.0.1" ];
                    type = "http";
                    tls = false;
                    x_forwarded = true;
                    resources = [
                      {
                        names = [ "client" ];
                        compress = true;
                      }
                      {
                        names = [ "federation" ];
                        compress = false;
                      }
                    ];
                  }
                ]
                ++ lib.optional hasWorkers {
                  path = "/run/matrix-synapse/main_replication.sock";
                  type = "http";
                  resources = [
                    {
                      names = [ "replication" ];
                      compress = false;
                    }
                  ];
                };
              };
              redis = mkOption {
                default = { };
                type = types.submodule {
                  freeformType = format.type;
                  options.enabled = mkOption {
                    type = types.bool;
                    default = false;
                  };
                };
              };
            };
          };
        };
        workers = mkOption {
          default = { };
          type = types.attrsOf (
            types.submodule {
              freeformType = format.type;
              options = {
                worker_app = mkOption {
                  type = types.enum [
                    "synapse.app.generic_worker"
                    "synapse.app.media_repository"
                  ];
                  default = "synapse.app.generic_worker";
                };
                worker_listeners = mkOption {
                  type = types.listOf (listenerType true);
                  default = [ ];
                };
              };
            }
          );
        };
      };
      config = mkIf cfg.enable {
        assertions = [
          {
            assertion = clientListener != null;
            message = "At least one listener which serves the `client` resource via HTTP is required by synapse in `services.matrix-synapse.settings.listeners` or in one of the workers!";
          }
          {
            assertion = hasWorkers -> cfg.settings.redis.enabled;
            message = "Workers for matrix-synapse require configuring a redis instance.";
          }
          {
            assertion =
              let
                main = cfg.settings.instance_map.main;
                listener = lib.findFirst
                  (
                    listener:
                    (
                      lib.hasAttr "port" main && listener.port or null == main.port
                        || lib.hasAttr "path" main && listener.path or null == main.path
                    )
                    && listenerSupportsResource "replication" listener
                    && (
                      lib.hasAttr "host" main
                        && lib.any (bind: bind == main.host || bind == "0.0.0.0" || bind == "::") listener.bind_addresses
                        || lib.hasAttr "path" main
                    )
                  )
                  null
                  cfg.settings.listeners;
              in
              hasWorkers -> (cfg.settings ? instance_map && cfg.settings.instance_map ? main && listener != null);
            message = "Workers for matrix-synapse require setting `services.matrix-synapse.settings.instance_map.main` to any listener configured in `services.matrix-synapse.settings.listeners` with a `\"replication\"` resource.";
          }
        ]
        ++ map
          (listener: {
            assertion = (listener.path == null) != (listener.bind_addresses == null);
            message = "Listeners require either a UNIX domain socket `path` or `bind_addresses` for a TCP socket.";
          })
          cfg.settings.listeners
        ++ map
          (listener: {
            assertion = listener.path != null -> (listener.bind_addresses == null && listener.port == null && listener.tls == null);
            message = "Listener configured with UNIX domain socket (${toString listener.path}) ignores bind_addresses, port and tls.";
          })
          cfg.settings.listeners
        ++ map
          (listener: {
            assertion = listener.path == null || listener.type == "http";
            message = "Listener configured with UNIX domain socket (${toString listener.path}) only supports the \"http\" listener type.";
          })
          cfg.settings.listeners;

        services.matrix-synapse.settings.redis = mkIf cfg.configureRedisLocally {
          enabled = true;
          path = config.services.redis.servers.matrix-synapse.unixSocket;
        };
        services.matrix-synapse.settings.instance_map.main = mkIf hasWorkers (
          lib.mkDefault {
            path = "/run/matrix-synapse/main_replication.sock";
          }
        );
        services.matrix-synapse.package = pkgs.matrix-synapse.override { inherit (cfg) plugins; };
        services.matrix-synapse.configFile = configFile;
        users.users.matrix-synapse.group = "matrix-synapse";
        users.groups.matrix-synapse = { };
        systemd.targets.matrix-synapse = mkIf hasWorkers {
          description = "Synapse Matrix parent target";
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ] ++ lib.optional hasLocalPostgresDB "postgresql.target";
          wantedBy = [ "multi-user.target" ];
        };
        systemd.services = {
          matrix-synapse = mkMerge [
            base
            {
              description = "Synapse Matrix homeserver";
              preStart = "${cfg.package}/bin/synapse_homeserver ${configPaths [ configFile ]} --generate-keys";
              serviceConfig.ExecStart = "${cfg.package}/bin/synapse_homeserver ${configPaths ([ configFile ] ++ cfg.extraConfigFiles)} --keys-directory ${cfg.dataDir}";
            }
          ];
        }
        // lib.mapAttrs'
          (
            name: worker:
              lib.nameValuePair "matrix-synapse-worker-${name}" (mkMerge [
                base
                {
                  description = "Synapse Matrix worker ${name}";
                  after = [ "matrix-synapse.service" ];
                  requires = [ "matrix-synapse.service" ];
                  serviceConfig.ExecStart = "${cfg.package}/bin/synapse_worker ${
                configPaths (
                  [
                    configFile
                    (format.generate "worker-${name}.yaml" (filterRecursiveNull worker // { worker_name = name; }))
                  ]
                  ++ cfg.extraConfigFiles
                )
              } --keys-directory ${cfg.dataDir}";
                }
              ])
          )
          cfg.workers;
        services.redis.servers.matrix-synapse = mkIf cfg.configureRedisLocally {
          enable = true;
          user = "matrix-synapse";
        };
        environment.systemPackages = [
          (pkgs.writeShellScriptBin "matrix-synapse-register_new_matrix_user" "exec ${cfg.package}/bin/register_new_matrix_user \"$@\"")
        ];
      };
    };

  # nixos/modules/services/databases/postgresql.nix, abridged to its units: postgresql.target
  # (what Synapse requires for a local database) over the server and its setup job.
  postgresql =
    { config, ... }:
    let
      cfg = config.services.postgresql;
    in
    {
      options.services.postgresql = mkOption {
        default = { };
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options.enable = lib.mkEnableOption "PostgreSQL";
          options.initialScript = mkOption {
            type = types.nullOr types.path;
            default = null;
          };
        };
      };
      config = mkIf cfg.enable {
        users.users.postgres.group = "postgres";
        users.groups.postgres = { };
        systemd.targets.postgresql = {
          description = "PostgreSQL";
          wantedBy = [ "multi-user.target" ];
          requires = [
            "postgresql.service"
            "postgresql-setup.service"
          ];
        };
        systemd.services.postgresql = {
          description = "PostgreSQL Server";
          after = [ "network.target" ];
          wants = [ "postgresql.target" ];
          partOf = [ "postgresql.target" ];
          serviceConfig = {
            ExecStart = "${pkgs.postgresql}/bin/postgres";
            User = "postgres";
            Group = "postgres";
            Type = "notify";
          };
        };
        systemd.services.postgresql-setup = {
          description = "PostgreSQL Setup Scripts";
          requires = [ "postgresql.service" ];
          after = [ "postgresql.service" ];
          serviceConfig = {
            User = "postgres";
            Group = "postgres";
            Type = "oneshot";
            RemainAfterExit = true;
          };
          script = lib.optionalString (cfg.initialScript != null) "psql -f ${cfg.initialScript}";
        };
      };
    };

  # nixos/modules/services/databases/redis.nix, abridged: one unit per enabled server, and the
  # socket path Synapse's configureRedisLocally reads.
  redis =
    { config, ... }:
    let
      redisName = name: "redis" + lib.optionalString (name != "") ("-" + name);
      enabled = lib.filterAttrs (_: server: server.enable) config.services.redis.servers;
    in
    {
      options.services.redis.servers = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule (
            { name, ... }:
            {
              options = {
                enable = lib.mkEnableOption "Redis server";
                user = mkOption {
                  type = types.str;
                  default = redisName name;
                };
                unixSocket = mkOption {
                  type = types.nullOr types.path;
                  default = "/run/${redisName name}/redis.sock";
                };
              };
            }
          )
        );
      };
      config.systemd.services = lib.mapAttrs'
        (
          name: server:
            lib.nameValuePair (redisName name) {
              description = "Redis Server - ${redisName name}";
              wantedBy = [ "multi-user.target" ];
              after = [ "network.target" ];
              serviceConfig = {
                ExecStart = "${pkgs.redis}/bin/redis-server /run/${redisName name}/redis.conf";
                Type = "notify";
                User = server.user;
                Group = server.user;
                RuntimeDirectory = redisName name;
                RuntimeDirectoryMode = "0750";
              };
            }
        )
        enabled;
    };

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
{
  evalNixOS =
    { modules
    , readOnlyPkgs ? true
    ,
    }:
    let
      evaluated = lib.evalModules {
        modules = [
          baseOptions
          synapse
          postgresql
          redis
          (if readOnlyPkgs then readOnlyNixpkgs else mutableNixpkgs)
        ]
        ++ lib.optional readOnlyPkgs { nixpkgs.pkgs = pkgs; }
        ++ modules;
      };
      inherit (evaluated) config;
      failed = failedAssertions config;
    in
    {
      inherit config;
      # Forcing the units is building the system: failed assertions stop it.
      units =
        if failed == [ ] then
          unitFiles config
        else
          throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}";
    };
}
