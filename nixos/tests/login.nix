# NixOS VM test: Synapse with the module in daemon mode, the verifier socket-activated, the
# secret delivered only through LoadCredential=.
{ self }:

let
  mintConfig = "/etc/synapse-token-auth-test/mint.toml";
  secretPath = "/var/lib/synapse-token-auth-test/jwt-secret";

  node =
    { allowRegistration }:
    { config, pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];
      virtualisation.memorySize = 2048;

      services.matrix-synapse = {
        enable = true;
        settings = {
          server_name = "test.local";
          database.name = "sqlite3";
          enable_registration = false;
          rc_login = {
            address = { per_second = 1000; burst_count = 1000; };
            account = { per_second = 1000; burst_count = 1000; };
            failed_attempts = { per_second = 1000; burst_count = 1000; };
          };
          listeners = [
            {
              port = 8008;
              bind_addresses = [ "127.0.0.1" ];
              type = "http";
              tls = false;
              x_forwarded = false;
              resources = [{ names = [ "client" ]; compress = false; }];
            }
          ];
        };
        # Test-only secret for register_new_matrix_user; a real setup keeps it out of the store.
        extraConfigFiles = [
          (pkgs.writeText "registration.yaml" ''registration_shared_secret: "vm-test-only"'')
        ];
      };

      services.synapse-token-auth = {
        enable = true;
        secretFile = secretPath;
        inherit allowRegistration;
      };

      # A fresh random secret at boot, root-only, before the verifier can start: it never exists
      # in the Nix store. The service reads it (at its first start), not the socket: a service
      # ordered before a socket would be ordered before sockets.target, while an ordinary service
      # comes after basic.target, which comes after sockets.target (an ordering cycle, and
      # systemd would drop the socket's start job).
      systemd.services.make-jwt-secret = {
        wantedBy = [ "multi-user.target" ];
        before = [
          "synapse-token-auth.service"
          "matrix-synapse.service"
        ];
        requiredBy = [ "synapse-token-auth.service" ];
        serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
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
in
{
  name = "synapse-token-auth-login";

  nodes = {
    allowed = node { allowRegistration = true; };
    refused = node { allowRegistration = false; };
  };

  testScript = ''
    import json
    import re

    def login(machine, user, token):
        body = json.dumps({"type": "com.famedly.login.token",
                           "identifier": {"type": "m.id.user", "user": user}, "token": token})
        out = machine.succeed(
            f"curl -s -o /tmp/login.json -w '%{{http_code}}' -XPOST http://127.0.0.1:8008/_matrix/client/v3/login -d '{body}'")
        return int(out), json.loads(machine.succeed("cat /tmp/login.json"))

    def unit_state(machine, unit):
        out = machine.succeed(f"systemctl show -P LoadState {unit}; systemctl show -P ActiveState {unit}")
        return tuple(out.split())

    def mint(machine, sub, *args):
        return machine.succeed(f"synapse-token-auth -c ${mintConfig} mint --sub {sub} {' '.join(args)}").strip()

    start_all()
    for m in (allowed, refused):
        m.wait_for_unit("matrix-synapse.service")
        m.wait_until_succeeds("curl --fail -s http://127.0.0.1:8008/_matrix/client/versions")
        assert unit_state(m, "synapse-token-auth.socket") == ("loaded", "active"), unit_state(m, "synapse-token-auth.socket")
        # socket activation: nothing verifies before the first login
        assert unit_state(m, "synapse-token-auth.service") == ("loaded", "inactive"), unit_state(m, "synapse-token-auth.service")
        m.succeed("matrix-synapse-register_new_matrix_user -u alice -p alice-pw --no-admin")

    with subtest("an existing user logs in with a token"):
        for m in (allowed, refused):
            status, body = login(m, "alice", mint(m, "alice"))
            assert status == 200 and body["user_id"] == "@alice:test.local", (status, body)
            assert unit_state(m, "synapse-token-auth.service") == ("loaded", "active"), unit_state(m, "synapse-token-auth.service")

    with subtest("a new user is registered only when allowed"):
        status, body = login(allowed, "newbie", mint(allowed, "newbie"))
        assert status == 200 and body["user_id"] == "@newbie:test.local", (status, body)
        status, body = login(refused, "newbie", mint(refused, "newbie"))
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (status, body)

    with subtest("a bad token is refused"):
        status, body = login(allowed, "alice", mint(allowed, "bob"))
        assert status == 403, (status, body)
        expired = mint(allowed, "alice", "--expires-in", "1s")
        allowed.sleep(65)
        status, body = login(allowed, "alice", expired)
        assert status == 403, (status, body)

    with subtest("the secret is not in /etc, the units or the daemon's config, and not readable by Synapse"):
        secret = allowed.succeed("cat ${secretPath}").strip()
        assert len(secret) == 64, "no secret was generated"
        # The daemon's config file, from the ExecStart the module generated.
        exec_start = allowed.succeed("systemctl show -P ExecStart synapse-token-auth.service")
        found = re.search(r"--config (/nix/store/\S+)", exec_start)
        assert found, exec_start
        config_file = found.group(1)
        units = allowed.succeed(
            "systemctl show -P FragmentPath -P DropInPaths synapse-token-auth.service synapse-token-auth.socket"
        ).split()
        searched = ["/etc", config_file, *units]

        def grep(pattern):
            # -R follows every symlink: /etc/static and the store files /etc links to (-r would
            # not, and would see none of them). Unreadable entries are skipped, so the searches
            # for what is known to be there show that the search itself works.
            out = allowed.succeed(f"grep -RlsF --devices=skip -e '{pattern}' {' '.join(searched)} || true")
            return set(out.split())

        # The search works and reaches through /etc/static: it finds what is known to be there.
        assert "/etc/synapse-token-auth-test/mint.toml" in grep("${secretPath}"), "grep does not see /etc"
        assert config_file in grep('secret_credential = "jwt-secret"'), "grep does not see the config"
        assert grep(secret) == set(), grep(secret)
        # Synapse's user exists and may run commands, but not read the secret.
        allowed.succeed("runuser -u matrix-synapse -- true")
        denied = allowed.fail("runuser -u matrix-synapse -- cat ${secretPath} 2>&1")
        assert "Permission denied" in denied, denied

    with subtest("journal entries carry the audit fields"):
        records = [json.loads(l) for l in allowed.succeed(
            "journalctl -u synapse-token-auth.service -o json --no-pager").splitlines() if l.strip()]
        accepted = [r for r in records if r.get("MESSAGE") == "JWT login accepted"]
        rejected = [r for r in records if r.get("REASON") == "subject_mismatch"]
        assert accepted and accepted[0]["USER_ID"] == "@alice:test.local" and accepted[0]["RESULT"] == "accepted", accepted
        assert accepted[0]["KEY"] == "primary", accepted
        assert rejected and rejected[0]["USER_ID"] == "@alice:test.local", rejected

    with subtest("restarting the verifier loses no login"):
        token = mint(allowed, "alice")
        body = json.dumps({"type": "com.famedly.login.token",
                           "identifier": {"type": "m.id.user", "user": "alice"}, "token": token})
        allowed.succeed(
            "for i in $(seq 150); do curl -s -o /dev/null -w '%{http_code}\\n' -XPOST "
            f"http://127.0.0.1:8008/_matrix/client/v3/login -d '{body}'; done > /tmp/codes & "
            "sleep 1; systemctl restart synapse-token-auth.service; wait")
        codes = allowed.succeed("sort /tmp/codes | uniq -c").strip()
        assert codes.split() == ["150", "200"], codes

    with subtest("the unit is the hardened packaged one, with the module's drop-in"):
        fragment = allowed.succeed("readlink -f $(systemctl show -P FragmentPath synapse-token-auth.service)").strip()
        assert re.fullmatch(r"/nix/store/[^/]+-synapse-token-auth-[^/]+/lib/systemd/system/synapse-token-auth.service", fragment), fragment
        dropins = allowed.succeed("systemctl show -P DropInPaths synapse-token-auth.service")
        assert "synapse-token-auth.service.d/overrides.conf" in dropins, dropins
        exposure = allowed.succeed("systemd-analyze security synapse-token-auth.service | tail -1")
        allowed.log(exposure)
        found = re.search(r"exposure level for \S+: ([0-9.]+)", exposure)
        assert found and float(found.group(1)) < 2.0, exposure
  '';
}
