# The verifier daemon and CLI, with the systemd units installed under lib/systemd/system so that
# NixOS runs the same unit files the system test runs under systemd-nspawn. ExecReload's kill is
# util-linux's, as in nixpkgs' own service modules (coreutils is not always built with kill).
{ lib, rustPlatform, util-linux }:

let
  source = import ./source.nix { inherit lib; };
in
rustPlatform.buildRustPackage {
  pname = "synapse-token-auth";
  inherit (source) version src;

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [
    "--package"
    "synapse-token-auth"
  ];
  cargoTestFlags = [
    "--package"
    "synapse-token-auth"
  ];
  # These two need what the build sandbox lacks (systemd-socket-activate, mount namespaces);
  # they run in the project's CI instead.
  checkFlags = [
    "--skip=daemon_starts_under_systemd_socket_activate_on_first_connection"
    "--skip=daemon_logs_audit_fields_to_journald"
    "--skip=daemon_keeps_the_socket_path_it_was_given_through_fd_exhaustion_and_sigterm"
  ];

  postInstall = ''
    install -Dm644 -t $out/lib/systemd/system dist/systemd/synapse-token-auth.socket dist/systemd/synapse-token-auth.service
    substituteInPlace $out/lib/systemd/system/synapse-token-auth.service \
      --replace-fail /usr/bin/synapse-token-auth $out/bin/synapse-token-auth \
      --replace-fail /bin/kill ${util-linux}/bin/kill
    install -Dm644 -t $out/share/doc/synapse-token-auth examples/config.toml examples/oauth.toml \
      dist/systemd/synapse-token-auth.service.d/fetch-keys.conf
  '';

  meta = {
    description = "JWT login for the Synapse Matrix homeserver: socket-activated verifier daemon and CLI";
    homepage = source.repository;
    license = lib.licenses.agpl3Plus;
    mainProgram = "synapse-token-auth";
    platforms = lib.platforms.linux;
  };
}
