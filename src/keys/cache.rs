//! When to fetch a published key set, what to keep, and when to fail closed.
//!
//! The policy is a small state machine with the time passed in, so every transition is tested
//! without a clock or a network; the daemon and the Python module only carry out the fetches it
//! asks for and report how they ended.
//!
//! - A fetched set is fresh for the answer's `Cache-Control: max-age`, clamped to
//!   [`CachePolicy::min_freshness`]..[`CachePolicy::max_freshness`], or
//!   [`CachePolicy::default_freshness`] without one.
//! - A stale set keeps serving logins while one caller refreshes it in the background.
//! - A `kid` the set does not have asks for a refetch, and the caller waits for it.
//! - Fetches are at least [`CachePolicy::cooldown`] apart, counted from every attempt, successful
//!   or not, and only one is in flight at a time (single flight): a storm of tokens with unknown
//!   `kid`s costs one fetch per cooldown.
//! - A failed fetch keeps the last good set until it is [`CachePolicy::max_staleness`] past its
//!   freshness; then, or when no set was ever fetched, logins fail closed.

use std::sync::Arc;

use super::jwks::KeySet;
use crate::RejectReason;

/// Tuning of the cache, in seconds. The defaults are the documented ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness of a set fetched without `Cache-Control: max-age`.
    pub default_freshness: u64,
    /// Lower bound of a `max-age`: a provider that says 0 is not fetched on every login.
    pub min_freshness: u64,
    /// Upper bound of a `max-age`: a rotated-out key is dropped within a day.
    pub max_freshness: u64,
    /// Least time between two fetch attempts.
    pub cooldown: u64,
    /// How long past its freshness a set is still used while fetches fail.
    pub max_staleness: u64,
    /// Longest fetch. A fetch not reported by then counts as failed, so that an adapter that
    /// lost one can never hold every later login waiting.
    pub fetch_timeout: u64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            default_freshness: 600,
            min_freshness: 60,
            max_freshness: 86_400,
            cooldown: 30,
            max_staleness: 86_400,
            fetch_timeout: 5,
        }
    }
}

impl CachePolicy {
    /// How long a set fetched with this `Cache-Control` header value stays fresh.
    #[must_use]
    pub fn freshness(&self, cache_control: Option<&str>) -> u64 {
        match cache_control.and_then(max_age) {
            Some(age) => age.clamp(self.min_freshness, self.max_freshness),
            None => self.default_freshness,
        }
    }
}

/// `max-age` of a `Cache-Control` value (RFC 9111 section 5.2.2.1); `no-store` and `no-cache`
/// count as 0 (then clamped to the minimum freshness).
fn max_age(value: &str) -> Option<u64> {
    let mut age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return Some(0),
            "max-age" => {
                // Digits only; a value too large for u64 is "a very long time".
                let digits = argument.trim().trim_matches('"');
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    age = Some(digits.parse().unwrap_or(u64::MAX));
                }
            }
            _ => {}
        }
    }
    age
}

/// What a login should do next.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Verify with these keys. With `refresh`, the caller starts a background fetch first (it
    /// is already recorded as in flight) and does not wait for it.
    Verify { keys: Arc<KeySet>, refresh: bool },
    /// The caller fetches now (recorded as in flight), waits at most the fetch timeout, reports
    /// with [`KeySetCache::fetched`], then asks again.
    Fetch,
    /// Another caller's fetch is in flight: wait for it, then ask again.
    Wait,
    /// Refuse the login.
    Reject(RejectReason),
}

/// How a fetch ended, as the adapter saw it.
#[derive(Debug)]
pub enum FetchResult {
    /// A parsed set, and the `Cache-Control` header of the answer.
    Fetched {
        keys: KeySet,
        cache_control: Option<String>,
    },
    /// Timeout, HTTP error, redirect, oversized answer, bad JSON or no usable key.
    Failed,
}

/// What the cache did with a fetch, for the fetch's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The new set replaced the old one: `kid`s added and removed, seconds of freshness.
    Replaced {
        added: Vec<String>,
        removed: Vec<String>,
        fresh_for: u64,
    },
    /// The fetch failed; the last good set serves until `until` (seconds since the epoch).
    KeptStale { until: u64 },
    /// The fetch failed and there is no usable set: logins fail closed.
    Unavailable,
}

#[derive(Debug, Clone)]
struct Cached {
    keys: Arc<KeySet>,
    fresh_until: u64,
}

/// The cache of one key source.
#[derive(Debug, Clone, Default)]
pub struct KeySetCache {
    policy: CachePolicy,
    cached: Option<Cached>,
    last_attempt: Option<u64>,
    /// Set from the start of a fetch until [`Self::fetched`].
    in_flight: bool,
}

impl KeySetCache {
    #[must_use]
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Decides for a login whose token names `kid` (or none), at `now`.
    pub fn decide(&mut self, now: u64, kid: Option<&str>) -> Decision {
        let Some(keys) = self.peek(now) else {
            return self.fetch_or(now, RejectReason::KeysUnavailable);
        };
        let stale = self.cached.as_ref().is_none_or(|c| now >= c.fresh_until);
        if kid.is_some_and(|kid| !keys.has_kid(kid)) {
            return self.fetch_or(now, RejectReason::UnknownKeyId);
        }
        let refresh = stale && self.may_fetch(now);
        if refresh {
            self.begin(now);
        }
        Decision::Verify { keys, refresh }
    }

    /// The set a login may use at `now` (fresh or within the maximum staleness), changing
    /// nothing.
    #[must_use]
    pub fn peek(&self, now: u64) -> Option<Arc<KeySet>> {
        self.cached
            .as_ref()
            .filter(|c| now < c.fresh_until.saturating_add(self.policy.max_staleness))
            .map(|c| Arc::clone(&c.keys))
    }

    /// Records how the fetch that [`Self::decide`] asked for ended.
    pub fn fetched(&mut self, now: u64, result: FetchResult) -> FetchOutcome {
        self.in_flight = false;
        match result {
            FetchResult::Fetched {
                keys,
                cache_control,
            } => {
                let fresh_for = self.policy.freshness(cache_control.as_deref());
                let kids = |set: &KeySet| -> Vec<String> {
                    set.keys().iter().filter_map(|k| k.kid.clone()).collect()
                };
                let old = self
                    .cached
                    .as_ref()
                    .map(|c| kids(&c.keys))
                    .unwrap_or_default();
                let new = kids(&keys);
                let added = new.iter().filter(|k| !old.contains(k)).cloned().collect();
                let removed = old.iter().filter(|k| !new.contains(k)).cloned().collect();
                self.cached = Some(Cached {
                    keys: Arc::new(keys),
                    fresh_until: now.saturating_add(fresh_for),
                });
                FetchOutcome::Replaced {
                    added,
                    removed,
                    fresh_for,
                }
            }
            FetchResult::Failed => match &self.cached {
                Some(c) if now < c.fresh_until.saturating_add(self.policy.max_staleness) => {
                    FetchOutcome::KeptStale {
                        until: c.fresh_until.saturating_add(self.policy.max_staleness),
                    }
                }
                _ => FetchOutcome::Unavailable,
            },
        }
    }

    /// Starts a fetch now if the cooldown and the single flight allow it (a tool's explicit
    /// fetch, not a login's).
    pub fn begin_fetch(&mut self, now: u64) -> bool {
        let may = self.may_fetch(now);
        if may {
            self.begin(now);
        }
        may
    }

    /// Whether a fetch is in flight at `now`.
    #[must_use]
    pub fn in_flight(&self, now: u64) -> bool {
        self.in_flight
            && self.last_attempt.is_some_and(|at| {
                now <= at.saturating_add(self.policy.fetch_timeout.saturating_add(1))
            })
    }

    fn fetch_or(&mut self, now: u64, reason: RejectReason) -> Decision {
        if self.in_flight(now) {
            Decision::Wait
        } else if self.may_fetch(now) {
            self.begin(now);
            Decision::Fetch
        } else {
            Decision::Reject(reason)
        }
    }

    fn may_fetch(&self, now: u64) -> bool {
        // Strictly after: times are whole seconds, so an attempt at 12.9 s counts as 12, and
        // `>=` would allow the next one at 13.0 s, well inside a one-second cooldown.
        !self.in_flight(now)
            && self
                .last_attempt
                .is_none_or(|at| now > at.saturating_add(self.policy.cooldown))
    }

    fn begin(&mut self, now: u64) {
        self.in_flight = true;
        self.last_attempt = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;

    use super::*;

    /// A set of Ed25519 keys (one key's material under several `kid`s).
    fn set(kids: &[&str]) -> KeySet {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keys/ed25519.pub"
        ))
        .expect("fixture");
        let der = pem::parse(pem).expect("pem");
        let raw = &der.contents()[der.contents().len() - 32..];
        let x = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid }))
            .collect();
        let doc = serde_json::json!({ "keys": keys }).to_string();
        KeySet::parse(doc.as_bytes(), &[Algorithm::EdDSA])
            .expect("set")
            .0
    }

    fn fetched(kids: &[&str], cache_control: Option<&str>) -> FetchResult {
        FetchResult::Fetched {
            keys: set(kids),
            cache_control: cache_control.map(str::to_owned),
        }
    }

    fn verify_refresh(d: &Decision) -> Option<bool> {
        match d {
            Decision::Verify { refresh, .. } => Some(*refresh),
            _ => None,
        }
    }

    const T0: u64 = 1_000_000;

    #[test]
    fn first_login_fetches_then_verifies_and_concurrent_logins_wait() {
        let mut c = KeySetCache::new(CachePolicy::default());
        assert!(matches!(c.decide(T0, Some("a")), Decision::Fetch));
        // Single flight: everyone else waits for that fetch.
        assert!(matches!(c.decide(T0, Some("a")), Decision::Wait));
        assert!(matches!(c.decide(T0, None), Decision::Wait));
        let outcome = c.fetched(T0 + 1, fetched(&["a"], None));
        assert_eq!(
            outcome,
            FetchOutcome::Replaced {
                added: vec!["a".into()],
                removed: vec![],
                fresh_for: 600
            }
        );
        assert_eq!(verify_refresh(&c.decide(T0 + 1, Some("a"))), Some(false));
        assert_eq!(verify_refresh(&c.decide(T0 + 1, None)), Some(false));
    }

    #[test]
    fn never_fetched_fails_closed_within_the_cooldown() {
        let mut c = KeySetCache::new(CachePolicy::default());
        assert!(matches!(c.decide(T0, None), Decision::Fetch));
        assert_eq!(
            c.fetched(T0 + 5, FetchResult::Failed),
            FetchOutcome::Unavailable
        );
        // The cooldown counts from the attempt, failed or not, and a whole cooldown must have
        // passed: times are whole seconds.
        for now in [T0 + 5, T0 + 30] {
            assert!(matches!(
                c.decide(now, None),
                Decision::Reject(RejectReason::KeysUnavailable)
            ));
        }
        assert!(matches!(c.decide(T0 + 31, None), Decision::Fetch));
    }

    #[test]
    fn unknown_kid_refetches_once_per_cooldown() {
        let mut c = KeySetCache::new(CachePolicy::default());
        assert!(matches!(c.decide(T0, None), Decision::Fetch));
        c.fetched(T0, fetched(&["old"], None));
        // Within the cooldown of the first fetch, an unknown kid is refused without a fetch.
        assert!(matches!(
            c.decide(T0 + 10, Some("new")),
            Decision::Reject(RejectReason::UnknownKeyId)
        ));
        // After it: one refetch, a storm of others waits for it.
        assert!(matches!(c.decide(T0 + 31, Some("new")), Decision::Fetch));
        for _ in 0..100 {
            assert!(matches!(c.decide(T0 + 31, Some("new")), Decision::Wait));
        }
        assert_eq!(
            c.fetched(T0 + 31, fetched(&["old", "new"], None)),
            FetchOutcome::Replaced {
                added: vec!["new".into()],
                removed: vec![],
                fresh_for: 600
            }
        );
        assert_eq!(verify_refresh(&c.decide(T0 + 31, Some("new"))), Some(false));
        // A kid the provider does not have either: refused until the next cooldown.
        assert!(matches!(
            c.decide(T0 + 32, Some("bogus")),
            Decision::Reject(RejectReason::UnknownKeyId)
        ));
        assert!(matches!(
            c.decide(T0 + 61, Some("bogus")),
            Decision::Reject(RejectReason::UnknownKeyId)
        ));
        assert!(matches!(c.decide(T0 + 62, Some("bogus")), Decision::Fetch));
    }

    #[test]
    fn stale_set_serves_while_one_caller_refreshes() {
        let mut c = KeySetCache::new(CachePolicy::default());
        c.decide(T0, None);
        c.fetched(T0, fetched(&["a"], Some("max-age=120")));
        assert_eq!(verify_refresh(&c.decide(T0 + 119, Some("a"))), Some(false));
        // Stale: the first login refreshes in the background, the others just verify.
        assert_eq!(verify_refresh(&c.decide(T0 + 120, Some("a"))), Some(true));
        assert_eq!(verify_refresh(&c.decide(T0 + 120, Some("a"))), Some(false));
        assert_eq!(
            c.fetched(T0 + 121, fetched(&["b"], None)),
            FetchOutcome::Replaced {
                added: vec!["b".into()],
                removed: vec!["a".into()],
                fresh_for: 600
            }
        );
    }

    #[test]
    fn failed_refresh_keeps_the_last_set_up_to_the_maximum_staleness() {
        let policy = CachePolicy::default();
        let mut c = KeySetCache::new(policy);
        c.decide(T0, None);
        c.fetched(T0, fetched(&["a"], None));
        let fresh_until = T0 + policy.default_freshness;
        assert_eq!(
            verify_refresh(&c.decide(fresh_until, Some("a"))),
            Some(true)
        );
        assert_eq!(
            c.fetched(fresh_until + 5, FetchResult::Failed),
            FetchOutcome::KeptStale {
                until: fresh_until + policy.max_staleness
            }
        );
        let last = fresh_until + policy.max_staleness - 1;
        assert_eq!(verify_refresh(&c.decide(last, Some("a"))), Some(true));
        c.fetched(last, FetchResult::Failed);
        // Past the maximum staleness: fail closed, and fetch again once the cooldown allows.
        let past = fresh_until + policy.max_staleness;
        assert!(matches!(
            c.decide(past, Some("a")),
            Decision::Reject(RejectReason::KeysUnavailable)
        ));
        assert!(matches!(c.decide(past + 30, Some("a")), Decision::Fetch));
        assert_eq!(
            c.fetched(past + 30, FetchResult::Failed),
            FetchOutcome::Unavailable
        );
    }

    #[test]
    fn a_fetch_never_reported_stops_counting_as_in_flight() {
        let mut c = KeySetCache::new(CachePolicy::default());
        assert!(matches!(c.decide(T0, None), Decision::Fetch));
        assert!(c.in_flight(T0 + 6));
        assert!(matches!(c.decide(T0 + 6, None), Decision::Wait));
        assert!(!c.in_flight(T0 + 7));
        // Abandoned after the fetch timeout; then the cooldown decides.
        assert!(matches!(
            c.decide(T0 + 7, None),
            Decision::Reject(RejectReason::KeysUnavailable)
        ));
        assert!(matches!(c.decide(T0 + 31, None), Decision::Fetch));
    }

    #[test]
    fn freshness_follows_cache_control_within_bounds() {
        let p = CachePolicy::default();
        for (header, fresh) in [
            (None, 600),
            (Some("max-age=3600"), 3600),
            (Some("public, max-age=300, must-revalidate"), 300),
            (Some("MAX-AGE=\"900\""), 900),
            (Some("max-age=0"), 60),
            (Some("no-store"), 60),
            (Some("no-cache, max-age=3600"), 60),
            (Some("max-age=99999999999999999999999"), 86_400),
            (Some("max-age=-1"), 600),
            (Some("max-age="), 600),
            (Some("private"), 600),
        ] {
            assert_eq!(p.freshness(header), fresh, "{header:?}");
        }
    }
}
