//! `GET /metrics` of the real daemon: exact counts after logins, refusals, reloads and key
//! fetches; output that parses as OpenMetrics text; the client token on TCP; and the Grafana
//! dashboard querying only metrics the daemon exports.
#![cfg(feature = "daemon")]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    path::Path,
    time::Duration,
};

use common::{daemon::*, *};
use jsonwebtoken::{Algorithm, Header};

/// One sample line: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition parsed strictly: every line is `# HELP`, `# TYPE`, `# UNIT`, the final
/// `# EOF`, or a sample `name{label="value",...} value` whose family has HELP and TYPE.
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        let mut helps = BTreeSet::new();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "ends in # EOF:\n{text}");
        for line in &lines[..lines.len() - 1] {
            if let Some(meta) = line.strip_prefix("# ") {
                let mut parts = meta.splitn(3, ' ');
                let (kind, family, rest) = (parts.next(), parts.next(), parts.next());
                let (Some(kind), Some(family), Some(rest)) = (kind, family, rest) else {
                    panic!("bad metadata line {line:?}");
                };
                assert!(is_metric_name(family), "{line:?}");
                match kind {
                    "HELP" => assert!(helps.insert(family.to_owned()), "two HELP: {line:?}"),
                    "TYPE" => {
                        assert!(
                            ["counter", "gauge", "histogram", "info"].contains(&rest),
                            "{line:?}"
                        );
                        types.insert(family.to_owned(), rest.to_owned());
                    }
                    "UNIT" => {}
                    _ => panic!("unknown metadata line {line:?}"),
                }
                continue;
            }
            samples.push(parse_sample(line));
        }
        for sample in &samples {
            let family = family_of(&sample.name);
            assert!(
                helps.contains(family) && types.contains_key(family),
                "no HELP or TYPE for {}",
                sample.name
            );
        }
        Self { samples, types }
    }

    /// The value of the sample `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == wanted)
            .collect();
        assert_eq!(found.len(), 1, "one {name}{labels:?} in {:?}", self.samples);
        found[0].value
    }

    /// `(reason, count)` of every rejection counted at least once.
    fn rejections(&self) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|s| s.name == "synapse_token_auth_decisions_total" && s.value > 0.0)
            .filter(|s| s.labels.get("result").map(String::as_str) == Some("rejected"))
            .map(|s| (s.labels["reason"].clone(), s.value))
            .collect()
    }

    fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: its name without the suffix its type adds.
fn family_of(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count", "_info", "_created"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

fn bad<T>(line: &str) -> T {
    panic!("not a sample line: {line:?}")
}

/// `name{label="value",...} value`, with label values as OpenMetrics escapes them.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad(line));
    let name = &line[..name_end];
    assert!(is_metric_name(name), "{line:?}");
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner.split_once("=\"").unwrap_or_else(|| bad(line));
            assert!(is_metric_name(key) && !key.contains(':'), "{line:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => bad(line),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => bad(line),
                }
            };
            labels.insert(key.to_owned(), value);
            inner = &after[end + 1..];
            inner = inner.strip_prefix(',').unwrap_or(inner);
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| bad(line));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| bad(line)),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn scrape(unix_path: &Path) -> (Exposition, String) {
    let response = unix_request(unix_path, "GET", "/metrics", b"");
    assert_eq!(response.status, 200, "{response:?}");
    (Exposition::parse(&response.body), response.body)
}

#[test]
fn metrics_count_logins_refusals_and_reloads_exactly() {
    let scratch = Scratch::new(&activated_config(""));
    let unix_path = scratch.path("verify.sock");
    let unix = unix_listener(&unix_path);
    let daemon = scratch.spawn_activated(&[("verify", raw_fd(&unix))]);
    scratch.wait_for("READY=1");

    let (before, _) = scrape(&unix_path);
    assert_eq!(
        before.value(
            "synapse_token_auth_decisions_total",
            &[("result", "accepted"), ("reason", "")]
        ),
        0.0
    );
    assert_eq!(before.types["synapse_token_auth_decisions"], "counter");
    assert_eq!(
        before.types["synapse_token_auth_request_duration_seconds"],
        "histogram"
    );

    let post = |body: &[u8]| unix_request(&unix_path, "POST", "/v1/verify", body);
    let token = hs512(&live_claims("alice"));
    let expired = hs512(&serde_json::json!({ "sub": "alice", "exp": 1_000_000_000 }));
    for (body, status) in [
        (verify_body(&token, "alice"), 200),
        (verify_body(&token, "@alice:example.org"), 200),
        (verify_body(&expired, "alice"), 403),
        (verify_body(&expired, "alice"), 403),
        (verify_body("garbage", "alice"), 403),
        (verify_body(&token, "bob"), 403),
        (b"{not json".to_vec(), 400),
        (vec![b'a'; 64 * 1024], 413),
    ] {
        assert_eq!(post(&body).status, status);
    }

    // A reload that works and one that fails.
    scratch.write_config(&activated_config("allow_registration = true"));
    daemon.signal(libc::SIGHUP);
    scratch.wait_for("READY=1");
    scratch.write_config("secret = \"short\"\n");
    daemon.signal(libc::SIGHUP);
    scratch.wait_for("READY=1");
    // Counts survive the reloads.
    assert_eq!(post(&verify_body(&token, "alice")).status, 200);

    let (metrics, text) = scrape(&unix_path);
    let decisions = |result, reason| {
        metrics.value(
            "synapse_token_auth_decisions_total",
            &[("result", result), ("reason", reason)],
        )
    };
    assert_eq!(decisions("accepted", ""), 3.0);
    assert_eq!(
        metrics.rejections(),
        BTreeMap::from([
            ("expired".to_owned(), 2.0),
            ("malformed_token".to_owned(), 1.0),
            ("subject_mismatch".to_owned(), 1.0),
        ])
    );
    // Every reason code is a series from the start, at zero until it happens.
    for reason in synapse_token_auth::RejectReason::ALL {
        let _ = decisions("rejected", reason.as_str());
    }
    let histogram = "synapse_token_auth_request_duration_seconds";
    assert_eq!(metrics.value(&format!("{histogram}_count"), &[]), 7.0);
    assert_eq!(
        metrics.value(&format!("{histogram}_bucket"), &[("le", "+Inf")]),
        7.0
    );
    assert_eq!(
        metrics.value(&format!("{histogram}_bucket"), &[("le", "5.0")]),
        7.0,
        "a local verification takes well under 5 s"
    );
    let sum = metrics.value(&format!("{histogram}_sum"), &[]);
    assert!(sum > 0.0 && sum < 5.0, "{sum}");
    let errors = |status| {
        metrics.value(
            "synapse_token_auth_http_errors_total",
            &[("status", status)],
        )
    };
    assert_eq!(
        (errors("400"), errors("401"), errors("408"), errors("413")),
        (1.0, 0.0, 0.0, 1.0)
    );
    let reloads = |result| metrics.value("synapse_token_auth_reloads_total", &[("result", result)]);
    assert_eq!((reloads("ok"), reloads("failed")), (1.0, 1.0));
    let fetches = |outcome| {
        metrics.value(
            "synapse_token_auth_key_fetches_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!((fetches("ok"), fetches("failed")), (0.0, 0.0));
    assert_eq!(
        metrics.value(
            "synapse_token_auth_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Counts only: no user, no token.
    assert!(
        !text.contains("alice") && !text.contains("bob") && !text.contains(&token),
        "{text}"
    );
}

#[test]
fn metrics_count_a_body_that_comes_too_slowly_as_408() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("v.sock");
    let scratch = Scratch::new(&unix_config(&socket, "request_timeout_ms = 1000\n"));
    let _daemon = scratch.spawn_configured();
    scratch.wait_for("READY=1");
    let mut stream = unix_stream(&socket);
    // The head promises a body that never comes.
    stream
        .write_all(b"POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200\r\n\r\n")
        .expect("head");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    let (metrics, _) = scrape(&socket);
    assert_eq!(
        metrics.value("synapse_token_auth_http_errors_total", &[("status", "408")]),
        1.0
    );
    assert_eq!(
        metrics.value("synapse_token_auth_request_duration_seconds_count", &[]),
        0.0,
        "no decision"
    );
}

#[test]
fn metrics_count_key_fetches_by_outcome() {
    let set = serde_json::json!({ "keys": [rsa_jwk("rsa.pub", "k1")] });
    let (url, server) = serve_jwks(set.to_string(), 1);
    let scratch = Scratch::new(&activated_config(&format!(
        "jwks_url = \"{url}\"\njwks_refetch_cooldown_seconds = 1"
    )));
    // activated_config puts the test secret first; a published key source stands alone.
    let config = std::fs::read_to_string(scratch.config()).expect("config");
    scratch.write_config(&config.replace(&format!("secret = \"{SECRET}\"\n"), ""));
    let unix_path = scratch.path("verify.sock");
    let unix = unix_listener(&unix_path);
    let _daemon = scratch.spawn_activated(&[("verify", raw_fd(&unix))]);
    scratch.wait_for("READY=1");

    let rs256 = |kid: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        sign_with_header(header, "rsa.key", &live_claims("alice"))
    };
    let first = verify_over_unix(&unix_path, &rs256("k1"), "alice");
    assert_eq!(first.status, 200, "{first:?}\n{}", scratch.stderr());
    server.join().expect("server");
    // The provider is gone: an unknown kid after the cooldown makes a fetch that fails. The
    // cache counts whole seconds and waits a whole cooldown: up to two seconds here.
    std::thread::sleep(Duration::from_millis(2100));
    let second = verify_over_unix(&unix_path, &rs256("k2"), "alice");
    assert_eq!(second.status, 403, "{second:?}");

    let (metrics, _) = scrape(&unix_path);
    let fetches = |outcome| {
        metrics.value(
            "synapse_token_auth_key_fetches_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (fetches("ok"), fetches("failed")),
        (1.0, 1.0),
        "{}",
        scratch.stderr()
    );
    assert_eq!(
        metrics.value(
            "synapse_token_auth_decisions_total",
            &[("result", "accepted"), ("reason", "")]
        ),
        1.0
    );
    assert_eq!(metrics.rejections().values().sum::<f64>(), 1.0);
}

#[test]
fn metrics_take_the_client_token_on_tcp_but_not_on_unix() {
    let scratch = Scratch::new("");
    let token = "metrics-client-token-0123456789abcdef";
    std::fs::write(scratch.path("client-token"), format!("{token}\n")).expect("token");
    scratch.write_config(&activated_config("").replace(
        "[server]\n",
        &format!(
            "[server]\nclient_token_file = \"{}\"\n",
            scratch.path("client-token").display()
        ),
    ));
    let (_daemon, unix_path, addr) = scratch.spawn_on_unix_and_tcp();
    scratch.wait_for("READY=1");
    let over_tcp = |headers: &[&str]| {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        request_with(stream, "GET", "/metrics", headers, b"")
    };

    let refused = over_tcp(&[]);
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(over_tcp(&["Authorization: Bearer wrong-token"]).status, 401);
    let allowed = over_tcp(&[&format!("Authorization: Bearer {token}")]);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let (metrics, _) = scrape(&unix_path);
    assert_eq!(
        metrics.value("synapse_token_auth_http_errors_total", &[("status", "401")]),
        2.0,
        "the refused scrapes are counted"
    );
}

/// Every metric that the shipped Grafana dashboard queries (panels and variables) is one the
/// daemon exports.
#[test]
fn metrics_grafana_dashboard_queries_only_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/grafana/synapse-token-auth.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 5, "{exprs:?}");

    let scratch = Scratch::new(&activated_config(""));
    let unix_path = scratch.path("verify.sock");
    let unix = unix_listener(&unix_path);
    let _daemon = scratch.spawn_activated(&[("verify", raw_fd(&unix))]);
    scratch.wait_for("READY=1");
    let (metrics, _) = scrape(&unix_path);
    let exported = metrics.names();

    let mut queried = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(start) = rest.find("synapse_token_auth_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            queried.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    assert!(!queried.is_empty(), "{exprs:?}");
    for name in &queried {
        assert!(
            exported.contains(name.as_str()),
            "the dashboard queries {name}, which the daemon does not export: {exported:?}"
        );
    }
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", serde_json::Value::String(expr)) => {
                        out.push(expr.clone())
                    }
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
