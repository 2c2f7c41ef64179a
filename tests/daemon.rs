//! The real daemon binary: socket activation (fd passing as systemd does it, and
//! `systemd-socket-activate`), readiness, the HTTP API, SIGHUP reload and SIGTERM.
#![cfg(feature = "daemon")]

mod common;

use std::{process::Command, time::Duration};

use common::{daemon::*, *};

#[test]
fn daemon_serves_inherited_unix_and_tcp_sockets_and_notifies() {
    let scratch = Scratch::new(&activated_config(""));
    let (mut daemon, unix_path, tcp_addr) = scratch.spawn_on_unix_and_tcp();

    let seen = scratch.wait_for("READY=1");
    assert!(seen.concat().contains("STATUS=verifying on"), "{seen:?}");

    let token = hs512(&live_claims("alice"));
    let over_unix = verify_over_unix(&unix_path, &token, "alice");
    assert_eq!(over_unix.status, 200, "{over_unix:?}");
    assert_eq!(over_unix.json()["user_id"], "@alice:example.org");
    let over_tcp = tcp_request(
        tcp_addr,
        "POST",
        "/v1/verify",
        &verify_body(&token, "Alice"),
    );
    assert_eq!(over_tcp.status, 200, "{over_tcp:?}");

    daemon.signal(libc::SIGTERM);
    scratch.wait_for("STOPPING=1");
    assert_eq!(
        daemon.wait_exit(),
        Some(0),
        "clean exit; stderr:\n{}",
        scratch.stderr()
    );
    let log = scratch.stderr();
    assert!(
        log.contains("(verify)") && log.contains("(verify-tcp)"),
        "{log}"
    );
}

#[test]
fn daemon_http_api_answers_each_case() {
    let scratch = Scratch::new(&activated_config("allow_registration = true"));
    let unix_path = scratch.path("verify.sock");
    let unix = unix_listener(&unix_path);
    let _daemon = scratch.spawn_activated(&[("verify", raw_fd(&unix))]);
    scratch.wait_for("READY=1");
    let post = |body: &[u8]| unix_request(&unix_path, "POST", "/v1/verify", body);

    let mut claims = live_claims("alice");
    claims["admin"] = true.into();
    claims["displayname"] = "Alice".into();
    let ok = post(&verify_body(&hs512(&claims), "@alice:example.org"));
    assert_eq!(ok.status, 200);
    let verdict = ok.json();
    assert_eq!(verdict["localpart"], "alice");
    assert_eq!(verdict["may_register"], true);
    assert_eq!(verdict["admin"], true);
    assert_eq!(verdict["displayname"], "Alice");
    assert_eq!(verdict["alg"], "HS512");

    let expired = hs512(&serde_json::json!({ "sub": "alice", "exp": 1_000_000_000 }));
    let rejected = post(&verify_body(&expired, "alice"));
    assert_eq!(
        (rejected.status, rejected.json()["reason"].clone()),
        (403, "expired".into())
    );
    let rejected = post(&verify_body("garbage", "alice"));
    assert_eq!(
        (rejected.status, rejected.json()["reason"].clone()),
        (403, "malformed_token".into())
    );
    let mismatch = post(&verify_body(&hs512(&live_claims("bob")), "alice"));
    assert_eq!(mismatch.json()["reason"], "subject_mismatch");

    assert_eq!(post(b"{not json").status, 400);
    assert_eq!(post(br#"{"token": "x"}"#).status, 400, "missing fields");
    assert_eq!(
        post(br#"{"token": 1, "user": "a", "server_name": "b"}"#).status,
        400
    );
    // Only a JSON object with exactly the three members is a request.
    let token = hs512(&live_claims("alice"));
    let as_array = serde_json::json!([token, "alice", "example.org"]).to_string();
    let array = post(as_array.as_bytes());
    assert_eq!(array.status, 400, "a JSON array: {array:?}");
    assert!(
        array.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("JSON object")),
        "{array:?}"
    );
    let extra = serde_json::json!({
        "token": token, "user": "alice", "server_name": "example.org", "admin": true
    });
    assert_eq!(
        post(extra.to_string().as_bytes()).status,
        400,
        "unknown member"
    );
    let huge = vec![b'a'; 64 * 1024];
    assert_eq!(post(&huge).status, 413);
    assert_eq!(
        unix_request(&unix_path, "GET", "/v1/verify", b"").status,
        405
    );
    assert_eq!(unix_request(&unix_path, "GET", "/nope", b"").status, 404);
    let health = unix_request(&unix_path, "GET", "/healthz", b"");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    // The audit log names user, result and reason, and never the token.
    let log = scratch.stderr();
    assert!(
        log.contains("JWT login rejected") && log.contains("reason=\"expired\""),
        "{log}"
    );
    assert!(log.contains("user_id=@alice:example.org"), "{log}");
    assert!(!log.contains(&expired), "token leaked into the log:\n{log}");
    assert!(!log.contains(SECRET), "secret leaked into the log");
}

#[test]
fn daemon_bounds_hostile_http_framing() {
    let scratch = Scratch::new(&activated_config(""));
    let unix_path = scratch.path("verify.sock");
    let unix = unix_listener(&unix_path);
    let mut daemon = scratch.spawn_activated(&[("verify", raw_fd(&unix))]);
    scratch.wait_for("READY=1");
    let raw = |request: &[u8]| unix_raw(&unix_path, request);
    let head = "POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
    let many_headers: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    let body = verify_body("garbage", "alice");
    let one = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(&body)
    );
    let cases = [
        (
            "a 64 KiB body in chunks (no length up front)",
            format!(
                "{head}Transfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                chunk.repeat(4)
            ),
            "HTTP/1.1 413",
        ),
        (
            "a declared length of 100 GB",
            format!("{head}Content-Length: 99999999999\r\n\r\n"),
            "HTTP/1.1 413",
        ),
        (
            "a 100 KiB header",
            format!("{head}X-Big: {}\r\n\r\n", "a".repeat(100_000)),
            "HTTP/1.1 400",
        ),
        (
            "200 headers",
            format!("{head}{many_headers}\r\n"),
            "HTTP/1.1 431",
        ),
        (
            "an unknown method",
            "BREW /v1/verify HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
            "HTTP/1.1 405",
        ),
    ];
    for (what, request, status) in cases {
        let answer = raw(request.as_bytes());
        assert!(answer.starts_with(status), "{what}: {answer:?}");
    }
    // Three pipelined requests on one connection get three answers, in order.
    let pipelined = format!(
        "{one}{one}{}",
        one.replace("Host: localhost", "Host: localhost\r\nConnection: close")
    );
    let answer = raw(pipelined.as_bytes());
    assert_eq!(
        answer.matches("HTTP/1.1 403").count(),
        3,
        "pipelined: {answer:?}"
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0), "{}", scratch.stderr());
    assert!(
        !scratch.stderr().contains("panicked"),
        "{}",
        scratch.stderr()
    );
}

#[test]
fn daemon_reloads_on_sighup_and_keeps_old_config_when_new_one_is_broken() {
    let scratch = Scratch::new(&activated_config(""));
    let unix_path = scratch.path("verify.sock");
    let unix = unix_listener(&unix_path);
    let daemon = scratch.spawn_activated(&[("verify", raw_fd(&unix))]);
    scratch.wait_for("READY=1");
    let token = hs512(&live_claims("alice"));
    let may_register = || {
        let r = verify_over_unix(&unix_path, &token, "alice");
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["may_register"].clone()
    };
    assert_eq!(may_register(), false);

    scratch.write_config(&activated_config("allow_registration = true"));
    daemon.signal(libc::SIGHUP);
    let seen = scratch.wait_for("READY=1");
    assert!(seen.concat().contains("RELOADING=1"), "{seen:?}");
    assert!(seen.concat().contains("MONOTONIC_USEC="), "{seen:?}");
    assert_eq!(may_register(), true, "new config in effect");

    scratch.write_config("secret = \"short\"\nbogus_key = 1\n");
    daemon.signal(libc::SIGHUP);
    scratch.wait_for("READY=1");
    assert_eq!(
        may_register(),
        true,
        "old config kept after a broken reload"
    );
    let log = scratch.stderr();
    assert!(log.contains("reload failed"), "{log}");
    assert!(
        log.contains("bogus_key") && log.contains("config.toml"),
        "problem and file named:\n{log}"
    );
}

#[test]
fn daemon_binds_configured_unix_socket_with_mode_when_not_activated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, "socket_mode = \"0600\"\n"));
    let mut daemon = scratch.spawn_configured();
    scratch.wait_for("READY=1");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket).expect("socket").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let r = verify_over_unix(&socket, &hs512(&live_claims("alice")), "alice");
    assert_eq!(r.status, 200);
    daemon.signal(libc::SIGINT);
    assert_eq!(daemon.wait_exit(), Some(0));
}

#[test]
fn daemon_stops_on_sigterm_even_when_started_with_it_blocked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, ""));
    let mut command = scratch.configured_command();
    with_signals_blocked(&mut command, &[libc::SIGTERM, libc::SIGHUP], None);
    let mut daemon = Daemon {
        child: command.spawn().expect("spawn daemon"),
    };
    scratch.wait_for("READY=1");
    daemon.signal(libc::SIGHUP);
    scratch.wait_for("RELOADING=1");
    scratch.wait_for("READY=1");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0), "{}", scratch.stderr());
}

#[test]
fn daemon_feeds_the_systemd_watchdog_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, ""));
    let mut command = scratch.configured_command();
    command
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut daemon = Daemon {
        child: command.spawn().expect("spawn daemon"),
    };
    scratch.wait_for("READY=1");
    let started = std::time::Instant::now();
    scratch.wait_for("WATCHDOG=1");
    scratch.wait_for("WATCHDOG=1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "two pings took {:?} with a 200 ms watchdog",
        started.elapsed()
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));

    // Without WATCHDOG_USEC there is no ping: READY=1, then only STOPPING=1.
    let scratch = Scratch::new(&std::fs::read_to_string(scratch.config()).expect("config"));
    let mut daemon = scratch.spawn_configured();
    let seen = scratch.wait_for("READY=1");
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal(libc::SIGTERM);
    let seen: Vec<String> = seen
        .into_iter()
        .chain(scratch.wait_for("STOPPING=1"))
        .collect();
    assert!(!seen.concat().contains("WATCHDOG"), "{seen:?}");
    assert_eq!(daemon.wait_exit(), Some(0));
}

#[test]
fn daemon_disconnects_a_client_that_sends_its_request_too_slowly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, "request_timeout_ms = 1000\n"));
    let mut daemon = scratch.spawn_configured();
    scratch.wait_for("READY=1");
    let started = std::time::Instant::now();
    // Half a request head, then nothing.
    let answer = unix_raw(&socket, b"POST /v1/verify HTTP/1.1\r\nHost: localhost\r\n");
    let elapsed = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        // actix's clock ticks every 500 ms, so the cut comes up to that much early.
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "disconnected after {elapsed:?}"
    );
    // The daemon still serves everyone else, also right after the cut.
    for _ in 0..5 {
        let r = verify_over_unix(&socket, &hs512(&live_claims("alice")), "alice");
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
}

#[test]
fn daemon_refuses_to_start_with_invalid_config() {
    let scratch = Scratch::new(
        "secret = \"short\"\n[server]\nworkers = 0\nrequest_timeout_ms = 0\nmax_connections = 0\n",
    );
    let mut daemon = scratch.spawn_configured();
    assert_eq!(daemon.wait_exit(), Some(1));
    let log = scratch.stderr();
    assert!(
        log.contains("secret")
            && log.contains("server.workers")
            && log.contains("server.request_timeout_ms")
            && log.contains("server.max_connections"),
        "{log}"
    );
    assert!(!log.contains("\"short\""), "secret value echoed:\n{log}");
}

#[test]
fn daemon_starts_under_systemd_socket_activate_on_first_connection() {
    // Not skipped when missing: CI installs it, and this is the reference activator.
    let activator = Command::new("systemd-socket-activate")
        .arg("--version")
        .output();
    assert!(
        activator.is_ok_and(|o| o.status.success()),
        "systemd-socket-activate is required (Debian package `systemd`)"
    );
    let scratch = Scratch::new(&activated_config(""));
    let unix_path = scratch.path("verify.sock");
    let port = tcp_listener().local_addr().expect("addr").port();
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&unix_path)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--fdname=verify:verify-tcp")
        // It scrubs the environment: everything the daemon needs is passed with -E.
        .arg(format!(
            "--setenv=SYNAPSE_TOKEN_AUTH_CONFIG={}",
            scratch.config().display()
        ))
        .arg(format!(
            "--setenv=NOTIFY_SOCKET={}",
            scratch.path("notify").display()
        ))
        .arg(BIN)
        .arg("serve")
        .stderr(std::fs::File::create(scratch.path("stderr")).expect("stderr"))
        .spawn()
        .expect("spawn systemd-socket-activate");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !unix_path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing runs the daemon before the first connection.
    scratch
        .notify
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    assert!(
        scratch.notify.recv(&mut buf).is_err(),
        "daemon started before any connection"
    );
    scratch
        .notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    let token = hs512(&live_claims("alice"));
    let r = verify_over_unix(&unix_path, &token, "alice");
    assert_eq!(r.status, 200, "{r:?}\n{}", scratch.stderr());
    scratch.wait_for("READY=1");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(
        tcp_request(addr, "POST", "/v1/verify", &verify_body(&token, "alice")).status,
        200
    );

    // systemd-socket-activate execs the daemon in its own process: SIGTERM goes to it.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(activator.id() as i32, libc::SIGTERM) },
        0
    );
    let status = activator.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", scratch.stderr());
}

/// Waits until `path` is a socket again, or panics after 10 s.
fn wait_for_path(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Retries a login over `path` for up to 10 s (the daemon pauses `accept` while it fails).
fn login_resumes(path: &std::path::Path, scratch: &Scratch) {
    let token = hs512(&live_claims("alice"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::os::unix::net::UnixStream::connect(path)
            .ok()
            .map(|_| verify_over_unix(path, &token, "alice").status);
        if status == Some(200) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no login after 10 s (last: {status:?}); path exists: {}\n{}",
            path.exists(),
            scratch.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn daemon_keeps_the_socket_path_it_was_given_through_fd_exhaustion_and_sigterm() {
    let scratch = Scratch::new(&activated_config(""));
    let unix_path = scratch.path("verify.sock");
    let mut activator = Command::new("systemd-socket-activate");
    activator
        .arg("-l")
        .arg(&unix_path)
        .arg("--fdname=verify")
        .arg(format!(
            "--setenv=SYNAPSE_TOKEN_AUTH_CONFIG={}",
            scratch.config().display()
        ))
        .arg(format!(
            "--setenv=NOTIFY_SOCKET={}",
            scratch.path("notify").display()
        ))
        .arg(BIN)
        .arg("serve")
        .stderr(std::fs::File::create(scratch.path("stderr")).expect("stderr"));
    // A small file limit (inherited by the daemon through exec) makes the burst small.
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut activator, || {
            let limit = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Killed when dropped, should an assertion fail.
    let mut daemon = Daemon {
        child: activator
            .spawn()
            .expect("systemd-socket-activate (package `systemd`)"),
    };
    wait_for_path(&unix_path);
    login_resumes(&unix_path, &scratch);
    scratch.wait_for("READY=1");

    // More idle connections than the daemon has file descriptors: accept fails with EMFILE.
    let burst: Vec<_> = (0..80)
        .map(|_| std::os::unix::net::UnixStream::connect(&unix_path).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        scratch.stderr().contains("Too many open files"),
        "no EMFILE in the burst:\n{}",
        scratch.stderr()
    );
    assert!(unix_path.exists(), "socket path removed during the burst");
    drop(burst);
    login_resumes(&unix_path, &scratch);
    let log = scratch.stderr();
    assert!(log.contains("accepting connections again"), "{log}");

    // SIGTERM: systemd-socket-activate has exec'd the daemon, so its pid is the daemon's.
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0), "{}", scratch.stderr());
    assert!(unix_path.exists(), "socket path removed on SIGTERM");
}

#[test]
fn daemon_restarted_on_the_same_socket_serves_it_again() {
    // The test keeps the listening socket, as systemd does, and starts a second daemon on it.
    let scratch = Scratch::new(&activated_config(""));
    let unix_path = scratch.path("verify.sock");
    let unix = unix_listener(&unix_path);
    for _ in 0..2 {
        let mut daemon = scratch.spawn_activated(&[("verify", raw_fd(&unix))]);
        scratch.wait_for("READY=1");
        login_resumes(&unix_path, &scratch);
        daemon.signal(libc::SIGTERM);
        assert_eq!(daemon.wait_exit(), Some(0), "{}", scratch.stderr());
        assert!(unix_path.exists(), "socket path removed on SIGTERM");
    }
}

#[test]
fn daemon_answers_408_when_the_body_comes_too_slowly() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, "request_timeout_ms = 1000\n"));
    let _daemon = scratch.spawn_configured();
    scratch.wait_for("READY=1");
    let mut stream = unix_stream(&socket);
    stream
        .write_all(b"POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200\r\n\r\n")
        .expect("head");
    let started = std::time::Instant::now();
    let mut writer = stream.try_clone().expect("clone");
    // One byte every 100 ms: the body would take 20 s.
    let dribble = std::thread::spawn(move || {
        for _ in 0..200 {
            if writer.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer:?} after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "connection closed after {elapsed:?}"
    );
    drop(stream);
    // The dribbling stops when the daemon has closed the connection (EPIPE), after draining
    // for at most 2 s.
    let _ = dribble.join();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "connection held for {:?}",
        started.elapsed()
    );
    let r = verify_over_unix(&socket, &hs512(&live_claims("alice")), "alice");
    assert_eq!(r.status, 200);
}

#[test]
fn daemon_reloads_on_a_sighup_sent_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, ""));
    // The daemon starts with a SIGHUP already pending (blocked before exec, delivered at once
    // when the daemon unblocks it): the earliest moment one can arrive.
    let mut command = scratch.configured_command();
    with_signals_blocked(&mut command, &[libc::SIGHUP], Some(libc::SIGHUP));
    let mut daemon = Daemon {
        child: command.spawn().expect("spawn daemon"),
    };
    scratch
        .notify
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut seen: Vec<String> = Vec::new();
    while !seen.concat().contains("RELOADING=1") {
        let mut buf = [0u8; 4096];
        match scratch.notify.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => panic!(
                "no reload; exit {:?}; notifications {seen:?}\n{}",
                daemon.child.try_wait(),
                scratch.stderr()
            ),
        }
    }
    scratch.wait_for("READY=1");

    // And one sent the moment READY=1 arrives, without waiting for the handler to show up.
    let scratch = Scratch::new(&unix_config(&socket, ""));
    let mut daemon2 = scratch.spawn_configured();
    scratch.wait_for("READY=1");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(daemon2.pid(), libc::SIGHUP) }, 0);
    scratch.wait_for("RELOADING=1");
    scratch.wait_for("READY=1");
    assert_eq!(daemon2.child.try_wait().expect("wait"), None, "daemon died");
    daemon2.signal(libc::SIGTERM);
    assert_eq!(daemon2.wait_exit(), Some(0));
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
}

/// A client that writes its whole request before reading, like Python's http.client.
fn write_all_then_read(mut stream: impl std::io::Read + std::io::Write, head: &str) -> String {
    stream.write_all(head.as_bytes()).expect("head");
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..16 {
        stream
            .write_all(&chunk)
            .expect("the daemon must take the whole 1 MiB body before closing");
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn daemon_lets_a_client_that_sends_a_big_body_first_read_the_413() {
    let scratch = Scratch::new(&activated_config(""));
    let (_daemon, unix_path, addr) = scratch.spawn_on_unix_and_tcp();
    scratch.wait_for("READY=1");
    let with_length =
        "POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n";
    let answer = write_all_then_read(unix_stream(&unix_path), with_length);
    assert!(answer.starts_with("HTTP/1.1 413"), "unix: {answer:?}");
    let tcp_stream = std::net::TcpStream::connect(addr).expect("connect");
    tcp_stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let answer = write_all_then_read(tcp_stream, with_length);
    assert!(answer.starts_with("HTTP/1.1 413"), "tcp: {answer:?}");
    let log = scratch.stderr();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn daemon_holds_at_most_max_connections_per_worker() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, "max_connections = 2\n"));
    let _daemon = scratch.spawn_configured();
    scratch.wait_for("READY=1");
    let idle: Vec<_> = (0..2).map(|_| unix_stream(&socket)).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A third client waits in the backlog while two connections are open...
    let mut third = unix_stream(&socket);
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut buf = [0u8; 64];
    assert!(
        third.read(&mut buf).is_err(),
        "answered beyond max_connections"
    );
    // ...and is served as soon as one closes.
    drop(idle);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
}
