//! The real daemon on TCP for workers on other hosts: TLS on every TCP listener, a client
//! token for `POST /v1/verify`, both reloaded on SIGHUP, and no unprotected TCP listener on a
//! non-loopback address.
#![cfg(feature = "daemon")]

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    sync::Arc,
    time::Duration,
};

use common::{daemon::*, *};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

const CLIENT_TOKEN: &str = "client-token-0123456789abcdef0123456789abcdef";

/// A test CA and a server certificate for 127.0.0.1 and localhost, in PEM.
struct Pki {
    ca: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        Self {
            ca: issuer.pem(),
            issuer,
        }
    }

    /// A new server certificate and its key, in PEM.
    fn server(&self) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client that trusts `ca_pem` only.
fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// One request over TLS to `addr`; also returns the certificate the server presented.
fn tls_request(
    addr: SocketAddr,
    ca_pem: &str,
    headers: &[&str],
    method: &str,
    uri: &str,
    body: &[u8],
) -> (Response, Vec<u8>) {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let connection =
        rustls::ClientConnection::new(client_config(ca_pem), name).expect("client connection");
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.flush().expect("handshake");
    // Drive the handshake to completion so that the peer certificate is known.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake with a server the CA vouches for");
    }
    let presented = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    (request_with(stream, method, uri, headers, body), presented)
}

fn pem_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Writes the server certificate, key and client token into the scratch directory.
fn write_material(scratch: &Scratch, pki: &Pki, token: &str) -> String {
    let (cert, key) = pki.server();
    std::fs::write(scratch.path("cert.pem"), &cert).expect("cert");
    std::fs::write(scratch.path("key.pem"), key).expect("key");
    std::fs::write(scratch.path("client-token"), format!("{token}\n")).expect("token");
    cert
}

fn tls_config(scratch: &Scratch) -> String {
    activated_config("").replace(
        "[server]\n",
        &format!(
            "[server]\ntls_certificate = \"{}\"\ntls_key = \"{}\"\nclient_token_file = \"{}\"\n",
            scratch.path("cert.pem").display(),
            scratch.path("key.pem").display(),
            scratch.path("client-token").display(),
        ),
    )
}

#[test]
fn daemon_serves_tls_and_requires_the_client_token() {
    let pki = Pki::new();
    let scratch = Scratch::new("");
    write_material(&scratch, &pki, CLIENT_TOKEN);
    scratch.write_config(&tls_config(&scratch));
    let (_daemon, unix_path, addr) = scratch.spawn_on_unix_and_tcp();
    let seen = scratch.wait_for("READY=1");
    assert!(seen.concat().contains("(TLS)"), "{seen:?}");
    let body = verify_body(&hs512(&live_claims("alice")), "alice");
    let post =
        |headers: &[&str]| tls_request(addr, &pki.ca, headers, "POST", "/v1/verify", &body).0;

    let ok = post(&[&bearer(CLIENT_TOKEN)]);
    assert_eq!(ok.status, 200, "{ok:?}\n{}", scratch.stderr());
    assert_eq!(ok.json()["user_id"], "@alice:example.org");

    let missing = post(&[]);
    assert_eq!(missing.status, 401, "{missing:?}");
    assert!(missing.json()["error"].is_string(), "{missing:?}");
    for wrong in [
        bearer("client-token-0123456789abcdef0123456789abcdeX"),
        bearer(&CLIENT_TOKEN[..10]),
        format!("Authorization: Basic {CLIENT_TOKEN}"),
        format!("Authorization: {CLIENT_TOKEN}"),
    ] {
        assert_eq!(post(&[&wrong]).status, 401, "{wrong}");
    }
    // The health check stays open, and the token is required on the unix socket too.
    let (health, _) = tls_request(addr, &pki.ca, &[], "GET", "/healthz", b"");
    assert_eq!(health.status, 200);
    assert_eq!(
        unix_request(&unix_path, "POST", "/v1/verify", &body).status,
        401
    );
    let over_unix = request_with(
        unix_stream(&unix_path),
        "POST",
        "/v1/verify",
        &[&bearer(CLIENT_TOKEN)],
        &body,
    );
    assert_eq!(over_unix.status, 200, "unix listeners stay plain HTTP");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "{answer:?}"
    );
    assert!(!scratch.stderr().contains(CLIENT_TOKEN), "token in the log");
}

#[test]
fn daemon_reloads_certificate_and_client_token_on_sighup() {
    let pki = Pki::new();
    let scratch = Scratch::new("");
    // Credentials for the certificate and the token, a path for the key.
    let credentials = scratch.path("credentials");
    std::fs::create_dir(&credentials).expect("dir");
    let first = write_material(&scratch, &pki, CLIENT_TOKEN);
    let move_in = |name: &str, to: &str| {
        std::fs::rename(scratch.path(name), credentials.join(to)).expect("move");
    };
    move_in("cert.pem", "tls-cert");
    move_in("client-token", "verifier-token");
    scratch.write_config(&activated_config("").replace(
        "[server]\n",
        &format!(
            "[server]\ntls_certificate_credential = \"tls-cert\"\ntls_key = \"{}\"\n\
             client_token_credential = \"verifier-token\"\n",
            scratch.path("key.pem").display()
        ),
    ));
    let tcp = tcp_listener();
    let addr = tcp.local_addr().expect("addr");
    let mut command = Command::from_scratch(&scratch, &[("verify-tcp", raw_fd(&tcp))]);
    command.env("CREDENTIALS_DIRECTORY", &credentials);
    let daemon = command.spawn();
    scratch.wait_for("READY=1");
    let body = verify_body(&hs512(&live_claims("alice")), "alice");
    let post = |token: &str| {
        tls_request(
            addr,
            &pki.ca,
            &[&bearer(token)],
            "POST",
            "/v1/verify",
            &body,
        )
    };
    let (ok, presented) = post(CLIENT_TOKEN);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(presented, pem_der(&first));

    // New certificate, key and token; SIGHUP.
    let second = write_material(&scratch, &pki, "a-new-client-token-after-rotation");
    move_in("cert.pem", "tls-cert");
    move_in("client-token", "verifier-token");
    daemon.signal(libc::SIGHUP);
    scratch.wait_for("RELOADING=1");
    scratch.wait_for("READY=1");
    let (ok, presented) = post("a-new-client-token-after-rotation");
    assert_eq!(ok.status, 200, "{ok:?}\n{}", scratch.stderr());
    assert_eq!(presented, pem_der(&second), "new certificate served");
    assert_eq!(post(CLIENT_TOKEN).0.status, 401, "old token refused");

    // A certificate that does not match the key: the old pair and token stay.
    let (other_cert, _) = pki.server();
    std::fs::write(credentials.join("tls-cert"), other_cert).expect("cert");
    std::fs::write(credentials.join("verifier-token"), "third-token").expect("token");
    daemon.signal(libc::SIGHUP);
    scratch.wait_for("RELOADING=1");
    scratch.wait_for("READY=1");
    let (ok, presented) = post("a-new-client-token-after-rotation");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(presented, pem_der(&second), "old certificate kept");
    let log = scratch.stderr();
    assert!(
        log.contains("reload failed") && log.contains("server.tls_key"),
        "{log}"
    );
}

#[test]
fn daemon_refuses_plain_tcp_on_a_non_loopback_address() {
    // Configured: names `server.listen` and the file.
    let scratch = Scratch::new(&format!(
        "secret = \"{SECRET}\"\n[server]\nlisten = [\"tcp:0.0.0.0:0\"]\nworkers = 1\n"
    ));
    let mut daemon = scratch.spawn_configured();
    assert_eq!(daemon.wait_exit(), Some(1));
    let log = scratch.stderr();
    assert!(
        log.contains("server.listen") && log.contains("0.0.0.0") && log.contains("config.toml"),
        "{log}"
    );
    // TLS alone is not enough: the client token is missing.
    let pki = Pki::new();
    write_material(&scratch, &pki, CLIENT_TOKEN);
    scratch.write_config(
        &tls_config(&scratch)
            .replace(
                "listen = [\"unix:/nonexistent/dir/verify.sock\"]",
                "listen = [\"0.0.0.0:0\"]",
            )
            .replace("client_token_file", "# client_token_file"),
    );
    let mut daemon = scratch.spawn_configured();
    assert_eq!(daemon.wait_exit(), Some(1), "{}", scratch.stderr());

    // Socket-activated: names the fd.
    let scratch = Scratch::new(&activated_config(""));
    let exposed = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let mut daemon = scratch.spawn_activated(&[("verify-tcp", raw_fd(&exposed))]);
    assert_eq!(daemon.wait_exit(), Some(1));
    let log = scratch.stderr();
    assert!(
        log.contains("socket-activated fd 3 (verify-tcp)") && log.contains("not a loopback"),
        "{log}"
    );
}

#[test]
fn daemon_config_errors_name_the_tls_and_token_keys() {
    let scratch = Scratch::new("");
    // check-config on a [server] table with `server`, expecting each of `expected` on stderr.
    let check = |server: &str, expected: &[&str]| {
        scratch.write_config(&format!(
            "secret = \"{SECRET}\"\n[server]\nworkers = 1\n{server}"
        ));
        let output = std::process::Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(scratch.config())
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{text}");
        for expected in expected {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    };
    check(
        "tls_certificate = \"/nonexistent/cert.pem\"\nclient_token_file = \"/nonexistent/token\"\n\
         client_token_credential = \"token\"\n",
        &[
            "`server.tls_key`: a TLS certificate needs its key",
            "`server.client_token_credential`: set either",
            "config.toml",
        ],
    );
    check(
        "tls_certificate = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n\
         client_token_file = \"/nonexistent/token\"\n",
        &[
            "`server.tls_certificate`: cannot read `/nonexistent/cert.pem`",
            "`server.client_token_file`: cannot read `/nonexistent/token`",
        ],
    );
}

/// Starting the daemon with extra environment (credentials) on activated sockets.
struct Command<'a> {
    scratch: &'a Scratch,
    listeners: Vec<(&'a str, i32)>,
    env: Vec<(String, std::path::PathBuf)>,
}

impl<'a> Command<'a> {
    fn from_scratch(scratch: &'a Scratch, listeners: &[(&'a str, i32)]) -> Self {
        Self {
            scratch,
            listeners: listeners.to_vec(),
            env: Vec::new(),
        }
    }

    fn env(&mut self, name: &str, value: &Path) -> &mut Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn spawn(&self) -> Daemon {
        self.scratch
            .spawn_activated_with(&self.listeners, &self.env)
    }
}
