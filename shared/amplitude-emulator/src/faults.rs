//! Fault injection: a script of what to serve next, consumed in order by the routes it names,
//! and [`Chaos`], a seeded random script of every misbehaviour for the chaos tests.

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One scripted response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The path it applies to (`/2/httpapi`, `/identify`, …); any route when absent.
    #[serde(default)]
    pub route: Option<String>,
    /// Wait this long before acting (longer than the client's timeout = a timeout).
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(flatten)]
    pub action: FaultAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer this status (with this JSON body, or `{"code": status}`); nothing is ingested.
    Status {
        status: u16,
        #[serde(default)]
        body: Option<Value>,
    },
    /// 429 for the events of these users/devices, with the documented body; nothing ingested.
    Throttle {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        devices: Vec<String>,
    },
    /// 429 naming these users/devices as over their daily quota.
    DailyQuota {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        devices: Vec<String>,
    },
    /// 400 listing these event indices in `events_with_invalid_fields.<field>`.
    InvalidIndices { indices: Vec<usize>, field: String },
    /// 400 listing only indices past the request's end in `events_with_invalid_fields.<field>`:
    /// a misbehaving server (Amplitude lists events it received). Nothing is ingested.
    IndicesPastTheRequest { field: String },
    /// Ingest the first half of the request's items, then answer `status` (e.g. 500).
    AcceptHalf { status: u16 },
    /// Ingest the whole request as usual, then wait `after_ms` and answer `status`: "stored,
    /// then 500" (`status` 500) or "stored, then too slow" (`status` 200 with `after_ms` longer
    /// than the client's timeout). The client cannot tell it was stored.
    StoreThen {
        status: u16,
        #[serde(default)]
        after_ms: u64,
    },
    /// Answer 200 with `{"code": code}` in the body (RudderStack has seen 200 + code 429).
    CodeInBody { code: u16 },
    /// Close the connection without a complete response.
    Reset,
    /// Only the delay; then the request is handled normally.
    Pass,
}

impl Fault {
    pub fn applies_to(&self, route: &str) -> bool {
        self.route.as_deref().is_none_or(|r| r == route)
    }

    /// Shorthand for a plain status on a route.
    pub fn status(route: &str, status: u16) -> Fault {
        Fault {
            route: Some(route.to_owned()),
            delay_ms: 0,
            action: FaultAction::Status { status, body: None },
        }
    }
}

/// A seeded random fault script for chaos tests: stored-then-500 (10%), stored-then-too-slow
/// (6%), stalls (4%), connection resets (6%), 5xx (8%), 429s throttling three of `users`
/// (8%), 413s (6%), 400s naming two event indices below 60 (4%), half-accepted requests (4%),
/// 400s listing only indices past the request (2%), with `refusals` also 401s (3%) and 200s
/// carrying a 503 code (2%); the rest pass.
pub struct Chaos<'a> {
    /// The routes a fault may name, `None` for any route.
    pub routes: &'a [Option<&'a str>],
    /// The users a throttle may name.
    pub users: &'a [String],
    /// Longer than the client waits: how long stalls and too-slow answers take.
    pub stall_ms: u64,
    /// Also refusals of the request as a whole (401, an error code in a 200).
    pub refusals: bool,
}

impl Chaos<'_> {
    /// `n` faults drawn from `rng`.
    pub fn schedule<R: Rng + ?Sized>(&self, rng: &mut R, n: usize) -> Vec<Fault> {
        (0..n).map(|_| self.fault(rng)).collect()
    }

    fn fault<R: Rng + ?Sized>(&self, rng: &mut R) -> Fault {
        let route = self.routes[rng.random_range(0..self.routes.len())].map(str::to_owned);
        let status = |status| FaultAction::Status { status, body: None };
        let stored_then = |status, after_ms| FaultAction::StoreThen { status, after_ms };
        let (delay_ms, action) = match rng.random_range(0..100) {
            0..10 => (0, stored_then(500, 0)),
            10..16 => (0, stored_then(200, self.stall_ms)),
            16..20 => (self.stall_ms, FaultAction::Pass),
            20..26 => (0, FaultAction::Reset),
            26..34 => (0, status([500, 502, 503, 504][rng.random_range(0..4)])),
            34..42 => {
                let users = (0..3)
                    .map(|_| self.users[rng.random_range(0..self.users.len())].clone())
                    .collect();
                (
                    0,
                    FaultAction::Throttle {
                        users,
                        devices: vec![],
                    },
                )
            }
            42..48 => (0, status(413)),
            48..52 => {
                let indices = (0..2).map(|_| rng.random_range(0..60)).collect();
                let field = "time".into();
                (0, FaultAction::InvalidIndices { indices, field })
            }
            52..56 => (0, FaultAction::AcceptHalf { status: 503 }),
            56..59 if self.refusals => (0, status(401)),
            59..61 if self.refusals => (0, FaultAction::CodeInBody { code: 503 }),
            61..63 => (
                0,
                FaultAction::IndicesPastTheRequest {
                    field: "time".into(),
                },
            ),
            _ => (0, FaultAction::Pass),
        };
        Fault {
            route,
            delay_ms,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn kind(f: &Fault) -> String {
        let name = serde_json::to_value(f).unwrap()["kind"]
            .as_str()
            .unwrap()
            .to_owned();
        match &f.action {
            FaultAction::Status { status, .. } => format!("{name} {status}"),
            FaultAction::Pass if f.delay_ms > 0 => "stall".into(),
            _ => name,
        }
    }

    #[test]
    fn chaos_is_seeded_and_draws_every_misbehaviour_it_names() {
        let users = vec!["u1".to_string(), "u2".to_string()];
        let mut chaos = Chaos {
            routes: &[None, Some("/identify")],
            users: &users,
            stall_ms: 900,
            refusals: false,
        };
        let draw = |chaos: &Chaos, seed| chaos.schedule(&mut SmallRng::seed_from_u64(seed), 2_000);
        assert_eq!(
            draw(&chaos, 1),
            draw(&chaos, 1),
            "the same seed, the same script"
        );
        let kinds: std::collections::BTreeSet<String> = draw(&chaos, 1)
            .iter()
            .map(kind)
            .filter(|k| !k.starts_with("status 5"))
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            [
                "accept_half",
                "indices_past_the_request",
                "invalid_indices",
                "pass",
                "reset",
                "stall",
                "status 413",
                "store_then",
                "throttle"
            ]
        );
        chaos.refusals = true;
        let kinds: std::collections::BTreeSet<String> = draw(&chaos, 1).iter().map(kind).collect();
        assert!(
            kinds.contains("status 401") && kinds.contains("code_in_body"),
            "{kinds:?}"
        );
    }
}
