//! The outbound requests of the `oauth` and `oidc` login types, described for an adapter to carry
//! out: token introspection (RFC 7662) and the registration webhook. The core builds them and
//! reads the answers; Synapse's HTTP client (embedded mode) or the daemon's sends them.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Map, Value};
use url::Url;

use super::config::report_unknown;
use crate::{
    config::{Reader, kind},
    keys::{self, published::check_url},
};

/// Longest answer read from an introspection endpoint or a webhook: introspection answers are a
/// few hundred bytes, and anything much larger is not one.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Default time an outbound request may take, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 5;
/// Longest accepted `timeout_seconds`: a login must never hang for minutes.
pub const MAX_TIMEOUT_SECONDS: u64 = 30;

/// A secret string (a password or a token): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How a request authenticates: the original's `auth` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    None,
    /// `{type: basic, username, password}`: RFC 7617.
    Basic {
        username: String,
        password: Secret,
    },
    /// `{type: bearer, token}`: RFC 6750.
    Bearer {
        token: Secret,
    },
}

impl HttpAuth {
    /// The `Authorization` header value, if any.
    #[must_use]
    pub fn header(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Basic { username, password } => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{}", password.0))
            )),
            Self::Bearer { token } => Some(format!("Bearer {}", token.0)),
        }
    }

    /// For the effective configuration: the type and user name, never the secret.
    #[must_use]
    pub fn redacted(&self) -> Value {
        match self {
            Self::None => Value::Null,
            Self::Basic { username, .. } => {
                serde_json::json!({"type": "basic", "username": username, "password": "[redacted]"})
            }
            Self::Bearer { .. } => serde_json::json!({"type": "bearer", "token": "[redacted]"}),
        }
    }
}

/// A request for the adapter to send: no redirects followed, at most `max_bytes` of answer read
/// within `timeout_seconds`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub url: Url,
    /// `application/x-www-form-urlencoded` (introspection) or `application/json` (webhook).
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The `Authorization` header value, if any: a secret.
    pub authorization: Option<String>,
    pub timeout_seconds: u64,
    pub max_bytes: usize,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body holds the user's token and the header a client secret.
        f.debug_struct("HttpRequest")
            .field("url", &self.url.as_str())
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// How a request ended, as the adapter saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAnswer {
    /// A response: its status and body (already bounded by `max_bytes`).
    Response { status: u16, body: Vec<u8> },
    /// No usable response: timeout, connection refused, TLS, a redirect, too large.
    Failed(String),
}

/// Where a request goes: its URL, authentication and timeout, from a configuration section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    pub auth: HttpAuth,
    pub timeout_seconds: u64,
}

impl Endpoint {
    /// Reads `url_key` (required), `auth` and `timeout_seconds` from the reader's map.
    pub(crate) fn parse(r: &mut Reader<'_>, url_key: &str) -> Option<Self> {
        let url = match r.non_empty_string(url_key) {
            Some(text) => check_url(&text).map_err(|m| r.problem(url_key, m)).ok(),
            None => {
                if !r.map.contains_key(url_key) {
                    r.problem(url_key, "required");
                }
                None
            }
        };
        let auth = parse_auth(r);
        let timeout_seconds = r.u64("timeout_seconds").unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout_seconds) {
            r.problem(
                "timeout_seconds",
                format!("must be between 1 and {MAX_TIMEOUT_SECONDS}"),
            );
        }
        Some(Self {
            url: url?,
            auth: auth?,
            timeout_seconds,
        })
    }

    /// A POST of `body` to this endpoint.
    #[must_use]
    pub fn post(&self, content_type: &'static str, body: Vec<u8>) -> HttpRequest {
        HttpRequest {
            url: self.url.clone(),
            content_type,
            body,
            authorization: self.auth.header(),
            timeout_seconds: self.timeout_seconds,
            max_bytes: MAX_ANSWER_BYTES,
        }
    }
}

/// The `auth` block: a mapping `{type: basic, username, password}` / `{type: bearer, token}`, or
/// the original's list form `['basic', USER, PASSWORD]` / `['bearer', TOKEN]`; `{type: null}` or
/// no block at all is no authentication. A secret may instead come from a file (`password_file`,
/// `token_file`) or a systemd credential (`password_credential`, `token_credential`), so that it
/// need not stand in the configuration itself.
fn parse_auth(r: &mut Reader<'_>) -> Option<HttpAuth> {
    let at = format!("{}auth", r.prefix);
    let map = match r.map.get("auth") {
        None | Some(Value::Null) => return Some(HttpAuth::None),
        Some(Value::Object(map)) => map.clone(),
        Some(Value::Array(items)) => {
            let names: &[&str] = match items.first().and_then(Value::as_str) {
                Some("basic") => &["type", "username", "password"],
                Some("bearer") => &["type", "token"],
                _ => &["type"],
            };
            if items.len() > names.len() {
                r.problem("auth", "too many elements in the list form");
                return None;
            }
            names
                .iter()
                .zip(items)
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect()
        }
        Some(other) => {
            r.problem(
                "auth",
                format!(
                    "expected a mapping with `type` (basic or bearer), found {}",
                    kind(other)
                ),
            );
            return None;
        }
    };
    let mut inner = Reader {
        map: &map,
        prefix: &format!("{at}."),
        problems: r.problems,
    };
    let (known, auth): (&[&str], Option<HttpAuth>) = match map.get("type") {
        Some(Value::Null) => (&["type"], Some(HttpAuth::None)),
        Some(Value::String(t)) if t == "basic" => {
            let username = inner.non_empty_string("username");
            if !map.contains_key("username") {
                inner.problem("username", "required for basic authentication");
            }
            let password = read_secret(&mut inner, "password");
            let auth = match (username, password) {
                (Some(username), Some(password)) => Some(HttpAuth::Basic { username, password }),
                _ => None,
            };
            (
                &[
                    "type",
                    "username",
                    "password",
                    "password_file",
                    "password_credential",
                ],
                auth,
            )
        }
        Some(Value::String(t)) if t == "bearer" => (
            &["type", "token", "token_file", "token_credential"],
            read_secret(&mut inner, "token").map(|token| HttpAuth::Bearer { token }),
        ),
        None => {
            inner.problem("type", "required: `basic`, `bearer` or null");
            (&["type"], None)
        }
        Some(_) => {
            inner.problem("type", "expected `basic`, `bearer` or null");
            (&["type"], None)
        }
    };
    report_unknown(&mut inner, known);
    auth
}

/// A secret given inline (`NAME`), in a file (`NAME_file`) or as a systemd credential
/// (`NAME_credential`): exactly one of them.
pub(crate) fn read_secret(r: &mut Reader<'_>, name: &str) -> Option<Secret> {
    let file_key = format!("{name}_file");
    let credential_key = format!("{name}_credential");
    let inline = r.non_empty_string(name);
    let file = r.non_empty_string(&file_key);
    let credential = r.non_empty_string(&credential_key);
    let given = [&inline, &file, &credential]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given > 1 {
        r.problem(
            name,
            format!("set only one of `{name}`, `{file_key}` and `{credential_key}`"),
        );
        return None;
    }
    if let Some(inline) = inline {
        return Some(Secret(inline));
    }
    let (key, read) = match (file, credential) {
        (Some(path), _) => (file_key, keys::read_file(std::path::Path::new(&path))),
        (None, Some(name)) => (
            credential_key,
            keys::credential_path(&name).and_then(|path| keys::read_file(&path)),
        ),
        (None, None) => {
            if ![name, file_key.as_str(), credential_key.as_str()]
                .iter()
                .any(|k| r.map.contains_key(*k))
            {
                r.problem(
                    name,
                    format!("required (or `{file_key}`, `{credential_key}`)"),
                );
            }
            return None;
        }
    };
    match read.map(keys::strip_newline) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) if !text.is_empty() && !text.contains(['\r', '\n']) => Some(Secret(text)),
            _ => {
                r.problem(&key, "must hold one line of UTF-8 text");
                None
            }
        },
        Err(e) => {
            r.problem(&key, e.to_string());
            None
        }
    }
}

/// Reads a JSON object answer of a successful request, or says why it is not one.
pub(crate) fn json_object(answer: &HttpAnswer) -> Result<Map<String, Value>, String> {
    match answer {
        HttpAnswer::Failed(why) => Err(why.clone()),
        HttpAnswer::Response { status, .. } if *status != 200 => Err(format!("HTTP {status}")),
        HttpAnswer::Response { body, .. } if body.len() > MAX_ANSWER_BYTES => Err(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        )),
        HttpAnswer::Response { body, .. } => match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(format!("the answer is {}, not a JSON object", kind(&other))),
            Err(e) => Err(format!("the answer is not JSON: {e}")),
        },
    }
}

/// `application/x-www-form-urlencoded` of name/value pairs.
pub(crate) fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Problem;

    fn endpoint(value: Value) -> Result<Endpoint, Vec<Problem>> {
        let Value::Object(map) = value else {
            unreachable!()
        };
        let mut problems = Vec::new();
        let mut r = Reader {
            map: &map,
            prefix: "x.",
            problems: &mut problems,
        };
        let endpoint = Endpoint::parse(&mut r, "url");
        match endpoint {
            Some(e) if problems.is_empty() => Ok(e),
            _ => Err(problems),
        }
    }

    fn keys(value: Value) -> Vec<String> {
        endpoint(value)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn auth_forms_give_the_same_header() {
        let mapping = endpoint(json!({"url": "https://idp/introspect",
            "auth": {"type": "basic", "username": "rs", "password": "pw"}}))
        .expect("valid");
        let list =
            endpoint(json!({"url": "https://idp/introspect", "auth": ["basic", "rs", "pw"]}))
                .expect("valid");
        assert_eq!(mapping.auth.header().as_deref(), Some("Basic cnM6cHc="));
        assert_eq!(mapping, list);
        let bearer =
            endpoint(json!({"url": "https://h/", "auth": ["bearer", "t0k"]})).expect("valid");
        assert_eq!(bearer.auth.header().as_deref(), Some("Bearer t0k"));
        let none = endpoint(json!({"url": "https://h/", "auth": {"type": null}})).expect("valid");
        assert_eq!(none.auth, HttpAuth::None);
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("sta-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").expect("write");
        let e = endpoint(
            json!({"url": "https://h/", "auth": {"type": "basic", "username": "u",
            "password_file": file}}),
        )
        .expect("valid");
        assert_eq!(
            e.auth,
            HttpAuth::Basic {
                username: "u".into(),
                password: Secret("from-file".into())
            }
        );
        assert_eq!(
            keys(
                json!({"url": "https://h/", "auth": {"type": "bearer", "token_file": dir.join("missing")}})
            ),
            ["x.auth.token_file"]
        );
    }

    #[test]
    fn problems_name_their_keys() {
        assert_eq!(keys(json!({})), ["x.url"]);
        assert_eq!(keys(json!({"url": "http://example.org/"})), ["x.url"]);
        assert_eq!(
            keys(json!({"url": "https://h/", "timeout_seconds": 0})),
            ["x.timeout_seconds"]
        );
        assert_eq!(
            keys(json!({"url": "https://h/", "auth": {"type": "digest"}})),
            ["x.auth.type"]
        );
        assert_eq!(
            keys(json!({"url": "https://h/", "auth": {"username": "u"}})),
            ["x.auth.type", "x.auth.username"]
        );
        assert_eq!(
            keys(json!({"url": "https://h/", "auth": {"type": "basic", "username": "u"}})),
            ["x.auth.password"]
        );
        assert_eq!(
            keys(
                json!({"url": "https://h/", "auth": {"type": "bearer", "token": "a", "token_file": "/f"}})
            ),
            ["x.auth.token"]
        );
        assert_eq!(
            keys(json!({"url": "https://h/", "auth": ["basic", "u", "p", "extra"]})),
            ["x.auth"]
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let e = endpoint(json!({"url": "https://h/", "auth": ["basic", "u", "hunter2"]}))
            .expect("valid");
        let request = e.post("application/json", b"{\"token\":\"secret-token\"}".to_vec());
        let shown = format!("{e:?} {request:?} {}", e.auth.redacted());
        assert!(
            !shown.contains("hunter2") && !shown.contains("secret-token"),
            "{shown}"
        );
    }

    #[test]
    fn answers_must_be_json_objects_with_status_200() {
        let ok = |body: &str| HttpAnswer::Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        };
        assert!(json_object(&ok(r#"{"active": true}"#)).is_ok());
        assert!(json_object(&ok("[1]")).is_err());
        assert!(json_object(&ok("not json")).is_err());
        assert!(
            json_object(&HttpAnswer::Response {
                status: 401,
                body: b"{}".to_vec()
            })
            .is_err()
        );
        assert!(json_object(&HttpAnswer::Failed("timeout".into())).is_err());
    }
}
