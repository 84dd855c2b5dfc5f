//! **Ingest: what arrives and what is answered.** The HTTP routes ([`Route`]), the Lambda
//! payload read into one request whatever its source ([`inbound`]), Segment's body shapes
//! ([`body`]), authentication ([`auth`]), the deletions route's own operations
//! ([`deletions`]), request-level errors ([`error`]) and the answer to Segment ([`reply`]).
//!
//! Nothing here talks to Amplitude or to a queue: delivery is `delivery`'s, and keys come from
//! `ops::secrets`.

pub mod auth;
pub mod body;
pub(crate) mod deletions;
pub(crate) mod error;
pub mod inbound;
pub mod reply;

use mapping::engage::{self, Engage};
use mapping::{Batch, Call, Rejection, Settings};

/// The HTTP routes, one function each (`template.yaml`). Everything that differs between them
/// is in this table: their names, the calls and methods they take, how a message is planned,
/// and whether they work on the User Privacy API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /events`: track, page, screen, identify (Engage identifies too), group, and alias
    /// (as `/alias` does: one URL is enough for Segment's Webhooks, which send every type to
    /// it).
    Events,
    /// `POST /alias`: alias → usermap / unmap.
    Alias,
    /// `POST /deletions`: Segment `delete` → User Privacy API; `GET` lists deletion jobs.
    Deletions,
    /// `POST /engage`: Engage audience and computed-trait identifies and tracks.
    Engage,
}

/// What a request to a route asks for, by its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST`: deliver the body's messages.
    Deliver,
    /// `GET /deletions`: list Amplitude's deletion jobs.
    ListDeletionJobs,
}

/// How a route turns one parsed message into Amplitude requests.
type Planner = for<'a> fn(
    &'a serde_json_borrow::Value<'a>,
    Batch<'a>,
    &Settings,
) -> Result<Engage<'a>, Rejection>;

impl Route {
    /// Every route (the local runner serves them all).
    pub const ALL: [Route; 4] = [Route::Events, Route::Alias, Route::Deletions, Route::Engage];

    /// The route's name in metrics (the `Route` dimension) and logs.
    pub fn name(self) -> &'static str {
        match self {
            Route::Events => "events",
            Route::Alias => "alias",
            Route::Deletions => "deletions",
            Route::Engage => "engage",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Events => "/events",
            Route::Alias => "/alias",
            Route::Deletions => "/deletions",
            Route::Engage => "/engage",
        }
    }

    /// The route whose [`path`](Route::path) is `path`.
    pub fn from_path(path: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.path() == path)
    }

    /// The Segment call types this route handles; others are answered 501.
    pub fn accepts(self, call: Call) -> bool {
        match self {
            Route::Events => matches!(
                call,
                Call::Track
                    | Call::Page
                    | Call::Screen
                    | Call::Identify
                    | Call::Group
                    | Call::Alias
            ),
            Route::Alias => call == Call::Alias,
            Route::Deletions => call == Call::Delete,
            Route::Engage => matches!(call, Call::Identify | Call::Track),
        }
    }

    /// The methods the route takes and what each asks for; any other is answered 405.
    pub fn operations(self) -> &'static [(&'static str, Operation)] {
        match self {
            Route::Deletions => &[
                ("POST", Operation::Deliver),
                ("GET", Operation::ListDeletionJobs),
            ],
            _ => &[("POST", Operation::Deliver)],
        }
    }

    /// What a request with `method` asks for, if the route takes the method.
    pub fn operation(self, method: &str) -> Option<Operation> {
        self.operations()
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(method))
            .map(|(_, op)| *op)
    }

    /// How the route plans a message: the Engage forms on `/engage`, the mapping elsewhere.
    pub(crate) fn planner(self) -> Planner {
        match self {
            Route::Engage => engage::plan_in,
            _ => classic,
        }
    }

    /// True for the route that works on Amplitude's User Privacy API: its deliveries need the
    /// project's secret key, each requested user id gets an audit line, and its answers list
    /// the deletion jobs Amplitude scheduled.
    pub fn is_privacy(self) -> bool {
        self == Route::Deletions
    }
}

/// The mapping of Segment's Amplitude destination, for every route but `/engage`.
fn classic<'a>(
    value: &'a serde_json_borrow::Value<'a>,
    batch: Batch<'a>,
    settings: &Settings,
) -> Result<Engage<'a>, Rejection> {
    mapping::plan_in(value, batch, settings).map(Engage::Plan)
}

/// A route travels (in queue jobs) as its path, `"/events"`; nothing else reads back as one.
impl serde::Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.path())
    }
}

impl<'de> serde::Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = std::borrow::Cow::<str>::deserialize(d)?;
        // Fixed text: the caller's string could be of any size.
        Route::from_path(&path)
            .ok_or_else(|| serde::de::Error::custom("the route is not one of this project's"))
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    /// A queue job names its route by path: each route reads back as itself, and nothing else
    /// reads back as a route (a near miss included), with a fixed reason.
    #[test]
    fn a_route_travels_as_its_path_and_only_a_path_reads_back() {
        for route in Route::ALL {
            let text = serde_json::to_string(&route).unwrap();
            assert_eq!(text, format!("\"{}\"", route.path()));
            assert_eq!(serde_json::from_str::<Route>(&text).unwrap(), route);
        }
        let refused = |text: &str| serde_json::from_str::<Route>(text).unwrap_err().to_string();
        // An escape (`\u0000`) makes serde_json read the path into a copy: refused the same.
        for near_miss in [
            r#""events""#,
            r#""/Events""#,
            r#""/events/""#,
            r#""""#,
            r#""/alias\u0000""#,
        ] {
            assert_eq!(refused(near_miss), "the route is not one of this project's");
        }
        assert_eq!(
            refused("1"),
            "invalid type: integer `1`, expected a string at line 1 column 1"
        );
    }
}
