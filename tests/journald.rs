//! Native journald logging: the daemon's records arrive at /run/systemd/journal/socket with the
//! audit fields as journal fields, and never carry the token.
//!
//! tracing-journald always writes to /run/systemd/journal/socket, so the daemon runs in a private
//! mount namespace (`unshare -m`) where that path is a bind mount of a directory holding the
//! test's own datagram socket. `JOURNAL_STREAM` names the daemon's stderr, as systemd sets it.
#![cfg(feature = "daemon")]

mod common;

use std::{
    collections::HashMap,
    os::unix::{fs::MetadataExt, net::UnixDatagram},
    process::{Command, Stdio},
    time::Duration,
};

use common::{daemon::*, *};

/// Parses one native-protocol datagram: `KEY=value\n` or `KEY\n<u64 le length><bytes>\n`.
fn parse_record(mut data: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while let Some(newline) = data.iter().position(|b| *b == b'\n') {
        let line = &data[..newline];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            data = &data[newline + 1..];
        } else {
            let rest = &data[newline + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().expect("length")) as usize;
            fields.insert(
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
            );
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

#[test]
fn daemon_logs_audit_fields_to_journald() {
    let journal_dir = tempfile::tempdir().expect("tempdir");
    let journal = UnixDatagram::bind(journal_dir.path().join("socket")).expect("journal socket");
    journal
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    let socket_dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, ""));
    let stderr = std::fs::File::create(scratch.path("stderr")).expect("stderr");
    let meta = stderr.metadata().expect("stat");

    let root = unsafe { libc::geteuid() } == 0; // SAFETY: geteuid cannot fail.
    let mut command = Command::new("unshare");
    command.args(if root {
        ["-m", "--propagation", "private"]
    } else {
        ["-Urm", "--propagation", "private"]
    });
    let mut daemon = Daemon {
        child: command
            .args([
                "sh",
                "-c",
                r#"mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal &&
                   mount --bind "$JOURNAL_DIR" /run/systemd/journal && exec "$@""#,
                "sh",
                BIN,
                "serve",
            ])
            .env("JOURNAL_DIR", journal_dir.path())
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("SYNAPSE_TOKEN_AUTH_CONFIG", scratch.config())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("unshare (util-linux) is required"),
    };

    // A thread drains the socket for the whole run, as journald would: a datagram socket queues
    // only net.unix.max_dgram_qlen (often 10) records, and a daemon whose records nobody reads
    // blocks in send(2).
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = journal.recv(&mut buf) {
            // tracing-journald probes the socket with an empty datagram when it starts.
            if n > 0 && tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut records: Vec<(Vec<u8>, HashMap<String, String>)> = Vec::new();
    let receive_until = |message: &str, records: &mut Vec<_>| loop {
        let raw = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|e| {
            panic!(
                "no journal record {message:?} ({e}); records so far: {records:?}; daemon stderr:\n{}",
                scratch.stderr()
            )
        });
        let fields = parse_record(&raw);
        let found = fields.get("MESSAGE").map(String::as_str) == Some(message);
        records.push((raw, fields));
        if found {
            return;
        }
    };
    // The "ready" record comes first: proof that records reach the journal socket.
    receive_until("ready", &mut records);
    assert_eq!(records.len(), 1, "records before ready: {records:?}");

    let token = hs512(&live_claims("alice"));
    let expired = hs512(&serde_json::json!({ "sub": "bob", "exp": 1_000_000_000 }));
    assert_eq!(verify_over_unix(&socket, &token, "alice").status, 200);
    assert_eq!(verify_over_unix(&socket, &expired, "bob").status, 403);
    receive_until("JWT login rejected", &mut records);
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0), "{}", scratch.stderr());
    receive_until("stopped", &mut records);

    let find = |message: &str| {
        records
            .iter()
            .map(|(_, fields)| fields)
            .find(|f| f.get("MESSAGE").map(String::as_str) == Some(message))
            .unwrap_or_else(|| panic!("no record {message:?} in {records:?}"))
    };
    let accepted = find("JWT login accepted");
    for (field, value) in [
        ("USER_ID", "@alice:example.org"),
        ("RESULT", "accepted"),
        ("ALG", "HS512"),
        ("KID", ""),
        ("KEY", "primary"),
        ("PRIORITY", "6"),
        ("SYSLOG_IDENTIFIER", "synapse-token-auth"),
    ] {
        assert_eq!(
            accepted.get(field).map(String::as_str),
            Some(value),
            "{field} in {accepted:?}"
        );
    }
    let rejected = find("JWT login rejected");
    assert_eq!(
        rejected.get("USER_ID").map(String::as_str),
        Some("@bob:example.org")
    );
    assert_eq!(rejected.get("REASON").map(String::as_str), Some("expired"));
    assert_eq!(rejected.get("RESULT").map(String::as_str), Some("rejected"));
    assert_eq!(rejected.get("PRIORITY").map(String::as_str), Some("6"));
    for (raw, _) in &records {
        let text = String::from_utf8_lossy(raw);
        assert!(
            !text.contains(&token) && !text.contains(&expired),
            "token in a journal record"
        );
        assert!(!text.contains(SECRET), "secret in a journal record");
    }
    // Under journald nothing is written to stderr twice.
    assert!(
        !scratch.stderr().contains("JWT login"),
        "{}",
        scratch.stderr()
    );
}
