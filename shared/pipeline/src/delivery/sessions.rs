//! The sessions stage of a request (spec §18), between planning and delivery: which messages
//! need a session (the mapping says, `mapping::session_need_in`), and the ids the
//! [`Sessionizer`](sessions::Sessionizer) picks for them against the shared store. Only the
//! events route has one, and only with `sessionize` on.

use sessions::{Assigned, Need};
use tokio::time::Instant;

use super::planning::{self, Shared};
use crate::function::Function;
use crate::ingest::Route;
use crate::ingest::body::Messages;

impl Function {
    /// The session of each message of the request that needs one. A store that fails or is
    /// slow leaves them without (one WARN line; the events are counted as degraded when they
    /// are planned), and delivery goes on. Each message is parsed here and again when it is
    /// planned: plans are made and sent a bounded chunk at a time (never all held at once), so
    /// the ids must be known before the first plan is made.
    pub(crate) async fn assign_sessions(
        &self,
        route: Route,
        messages: &Messages<'_>,
        shared: &Shared<'_>,
        deadline: Instant,
        request_id: &str,
    ) -> Assigned {
        let Some(sessionizer) = self.sessions.as_ref().filter(|_| route == Route::Events) else {
            return Assigned::default();
        };
        let received_ms = crate::ops::now_ms() as i64;
        let needs: Vec<Need> = messages
            .texts()
            .enumerate()
            .filter_map(|(message, text)| {
                let mut scratch = mapping::Scratch::default();
                let value = planning::parse(text, &mut scratch).ok()?;
                let need = mapping::session_need_in(&value, shared.batch(), &self.config.settings)?;
                Some(Need {
                    message,
                    key: need.key,
                    time: need.time.unwrap_or(received_ms),
                })
            })
            .collect();
        if needs.is_empty() {
            return Assigned::default();
        }
        let assigned = sessionizer.assign(needs, received_ms, deadline).await;
        if let Some(failure) = &assigned.failure {
            tracing::warn!(
                request_id,
                route = route.path(),
                messages = assigned.degraded.len(),
                error = %failure,
                "sessions degraded: these messages' events go without a synthesised session"
            );
        }
        assigned
    }
}
