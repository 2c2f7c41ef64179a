# NixOS VM test: Synapse with a generic worker (PostgreSQL, Redis), the module loaded by both
# processes in daemon mode from the shared homeserver.yaml, one verifier for both, and metrics
# from the daemon and from each Synapse process.
{ self }:

let
  mintConfig = "/etc/synapse-token-auth-test/mint.toml";
  secretPath = "/var/lib/synapse-token-auth-test/jwt-secret";
  daemonMetrics = "127.0.0.1:9745";
  relaxed = {
    per_second = 1000;
    burst_count = 1000;
  };
  clientListener = port: {
    inherit port;
    bind_addresses = [ "127.0.0.1" ];
    type = "http";
    tls = false;
    x_forwarded = false;
    resources = [
      {
        names = [ "client" ];
        compress = false;
      }
    ];
  };
  metricsListener = port: {
    inherit port;
    bind_addresses = [ "127.0.0.1" ];
    type = "metrics";
    tls = false;
    resources = [ ];
  };
in
{
  name = "synapse-token-auth-workers";

  nodes.machine =
    { config, pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];
      virtualisation.memorySize = 3072;

      # Synapse on PostgreSQL (workers need it), with the C collation it checks for. Peer
      # authentication over the unix socket: the role is Synapse's user.
      services.postgresql = {
        enable = true;
        initialScript = pkgs.writeText "synapse-init.sql" ''
          CREATE ROLE "matrix-synapse" WITH LOGIN;
          CREATE DATABASE "matrix-synapse" WITH OWNER "matrix-synapse"
            TEMPLATE template0 LC_COLLATE = "C" LC_CTYPE = "C";
        '';
      };

      services.matrix-synapse = {
        enable = true;
        configureRedisLocally = true;
        settings = {
          server_name = "test.local";
          database.name = "psycopg2";
          enable_registration = false;
          rc_login = {
            address = relaxed;
            account = relaxed;
            failed_attempts = relaxed;
          };
          listeners = [
            (clientListener 8008)
            # Replication for the worker (nixpkgs' default, which setting listeners replaces).
            {
              path = "/run/matrix-synapse/main_replication.sock";
              type = "http";
              resources = [
                {
                  names = [ "replication" ];
                  compress = false;
                }
              ];
            }
            (metricsListener 9000)
          ];
        };
        workers.client.worker_listeners = [
          (clientListener 8009)
          (metricsListener 9001)
        ];
        # Test-only secret for register_new_matrix_user; a real setup keeps it out of the store.
        extraConfigFiles = [
          (pkgs.writeText "registration.yaml" ''registration_shared_secret: "vm-test-only"'')
        ];
      };

      services.synapse-token-auth = {
        enable = true;
        secretFile = secretPath;
        allowRegistration = true;
        metrics = {
          enable = true;
          listen = daemonMetrics;
        };
      };

      # As in login.nix: a fresh secret at boot, before the verifier's first start.
      systemd.services.make-jwt-secret = {
        wantedBy = [ "multi-user.target" ];
        before = [
          "synapse-token-auth.service"
          "matrix-synapse.service"
        ];
        requiredBy = [ "synapse-token-auth.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        script = ''
          install -d -m 0700 ${dirOf secretPath}
          [ -e ${secretPath} ] || (umask 077; head -c 48 /dev/urandom | base64 -w0 > ${secretPath})
        '';
      };
      environment.etc."synapse-token-auth-test/mint.toml".text = ''
        secret_file = "${secretPath}"
      '';
      environment.systemPackages = [
        config.services.synapse-token-auth.package
        pkgs.curl
      ];
    };

  testScript = ''
    import json
    import re

    MAIN, WORKER = 8008, 8009
    LOGIN_TYPE = "com.famedly.login.token"

    def login(port, user, token):
        body = json.dumps({"type": LOGIN_TYPE, "identifier": {"type": "m.id.user", "user": user}, "token": token})
        out = machine.succeed(
            f"curl -s -o /tmp/login.json -w '%{{http_code}}' -XPOST http://127.0.0.1:{port}/_matrix/client/v3/login -d '{body}'")
        return int(out), json.loads(machine.succeed("cat /tmp/login.json"))

    def mint(sub):
        return machine.succeed(f"synapse-token-auth -c ${mintConfig} mint --sub {sub}").strip()

    def samples(text, name):
        """{frozenset of (label, value)}: value, for the samples of one metric."""
        found = {}
        for m in re.finditer(r"^" + re.escape(name) + r"\{([^}]*)\} (\S+)$", text, re.M):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            found[labels] = float(m.group(2))
        return found

    def module_logins(port, result, reason=""):
        text = machine.succeed(f"curl --fail -s http://127.0.0.1:{port}/_synapse/metrics")
        labels = frozenset({("login_type", LOGIN_TYPE), ("result", result), ("reason", reason)})
        return samples(text, "synapse_token_auth_logins_total").get(labels, 0.0)

    start_all()
    machine.wait_for_unit("postgresql.target")
    machine.wait_for_unit("matrix-synapse.service")
    machine.wait_for_unit("matrix-synapse-worker-client.service")
    for port in (MAIN, WORKER):
        machine.wait_until_succeeds(f"curl --fail -s http://127.0.0.1:{port}/_matrix/client/versions")

    with subtest("the worker's unit wants the verifier's socket and starts after it"):
        for unit in ("matrix-synapse.service", "matrix-synapse-worker-client.service"):
            wants = machine.succeed(f"systemctl show -P Wants {unit}").split()
            after = machine.succeed(f"systemctl show -P After {unit}").split()
            assert "synapse-token-auth.socket" in wants and "synapse-token-auth.socket" in after, (unit, wants, after)

    with subtest("the worker loaded the module: it offers the login type"):
        flows = json.loads(machine.succeed(f"curl --fail -s http://127.0.0.1:{WORKER}/_matrix/client/v3/login"))
        assert {"type": LOGIN_TYPE} in flows["flows"], flows

    with subtest("a first login on the worker registers the user; main and the worker log it in"):
        status, body = login(WORKER, "carol", mint("carol"))
        assert status == 200 and body["user_id"] == "@carol:test.local", (status, body)
        status, body = login(MAIN, "carol", mint("carol"))
        assert status == 200 and body["user_id"] == "@carol:test.local", (status, body)
        status, body = login(WORKER, "carol", mint("dave"))
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (status, body)
        machine.wait_until_succeeds(
            "journalctl -u matrix-synapse-worker-client.service --no-pager | grep -F 'JWT login accepted for @carol:test.local'")
        # An access token from the worker works on main.
        status, body = login(WORKER, "carol", mint("carol"))
        token = body["access_token"]
        whoami = json.loads(machine.succeed(
            f"curl --fail -s -H 'Authorization: Bearer {token}' http://127.0.0.1:{MAIN}/_matrix/client/v3/account/whoami"))
        assert whoami["user_id"] == "@carol:test.local", whoami

    with subtest("each Synapse process exports the module's counters of the logins it served"):
        assert module_logins(9001, "accepted") == 2.0, module_logins(9001, "accepted")
        assert module_logins(9001, "rejected", "subject_mismatch") == 1.0
        assert module_logins(9000, "accepted") == 1.0, module_logins(9000, "accepted")
        assert module_logins(9000, "rejected", "subject_mismatch") == 0.0

    with subtest("the daemon's metrics are scrapeable over TCP and count every process's verdicts"):
        text = machine.succeed("curl --fail -s http://${daemonMetrics}/metrics")
        decisions = samples(text, "synapse_token_auth_decisions_total")
        assert decisions[frozenset({("result", "accepted"), ("reason", "")})] == 3.0, decisions
        assert decisions[frozenset({("result", "rejected"), ("reason", "subject_mismatch")})] == 1.0, decisions
        listens = machine.succeed("systemctl show -P Listen synapse-token-auth.socket")
        assert "/run/synapse-token-auth/verify.sock" in listens and "${daemonMetrics}" in listens, listens
  '';
}
