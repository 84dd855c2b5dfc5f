//! Spec §18.4–§18.5: the state of one key and how its events are assigned, in time order.

/// `session_id` of an event that arrives too late for any session in the state (§18.5): the
/// value Amplitude itself uses for "out of session".
pub const OUT_OF_SESSION: i64 = -1;

/// What is kept per key (§18.4): the session id (the epoch milliseconds of its first event)
/// and the time of its latest event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub start: i64,
    pub last: i64,
}

/// Assigns one key's events, given as `(message, time)` in input order, from the stored
/// `state` (§18.5): in order of time (ties in input order), an event after `last + timeout`
/// (or with no state) starts a session; one within `[start − timeout, last + timeout]` joins
/// the current one and may move `last` on; one before `start − timeout` is out of session
/// ([`OUT_OF_SESSION`]) and changes nothing. Returns each message's session id, in the order
/// assigned, and the state after them.
pub fn assign_key(
    state: Option<State>,
    events: &[(usize, i64)],
    timeout_ms: i64,
) -> (Vec<(usize, i64)>, Option<State>) {
    let mut ordered = events.to_vec();
    ordered.sort_by_key(|&(message, time)| (time, message));
    let mut current = state;
    let mut ids = Vec::with_capacity(ordered.len());
    for (message, t) in ordered {
        let id = match current {
            Some(s) if t <= s.last.saturating_add(timeout_ms) => {
                if t >= s.start.saturating_sub(timeout_ms) {
                    current = Some(State {
                        start: s.start,
                        last: s.last.max(t),
                    });
                    s.start
                } else {
                    OUT_OF_SESSION
                }
            }
            _ => {
                current = Some(State { start: t, last: t });
                t
            }
        };
        ids.push((message, id));
    }
    (ids, current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const TIMEOUT: i64 = 30 * MIN;
    const T0: i64 = 1_700_000_000_000;

    fn state(start: i64, last: i64) -> Option<State> {
        Some(State { start, last })
    }

    #[test]
    fn s18_5_without_state_the_first_event_starts_a_session() {
        assert_eq!(
            assign_key(None, &[(0, T0)], TIMEOUT),
            (vec![(0, T0)], state(T0, T0))
        );
    }

    #[test]
    fn s18_5_an_event_within_the_timeout_continues_the_session() {
        assert_eq!(
            assign_key(state(T0, T0 + MIN), &[(3, T0 + 20 * MIN)], TIMEOUT),
            (vec![(3, T0)], state(T0, T0 + 20 * MIN))
        );
    }

    #[test]
    fn s18_5_the_timeout_edge_belongs_to_the_session_one_ms_later_does_not() {
        let last = T0 + MIN;
        assert_eq!(
            assign_key(state(T0, last), &[(0, last + TIMEOUT)], TIMEOUT),
            (vec![(0, T0)], state(T0, last + TIMEOUT))
        );
        assert_eq!(
            assign_key(state(T0, last), &[(0, last + TIMEOUT + 1)], TIMEOUT),
            (
                vec![(0, last + TIMEOUT + 1)],
                state(last + TIMEOUT + 1, last + TIMEOUT + 1)
            )
        );
    }

    #[test]
    fn s18_5_events_of_a_request_are_assigned_in_time_order_ties_in_input_order() {
        // Input order: 40 min, 0 min, 10 min, 10 min, 75 min. In time order the first three
        // form one session (gaps ≤ 30 min), 75 min is 35 min after 40: a new one.
        let events = [
            (0, T0 + 40 * MIN),
            (1, T0),
            (2, T0 + 10 * MIN),
            (3, T0 + 10 * MIN),
            (4, T0 + 75 * MIN),
        ];
        assert_eq!(
            assign_key(None, &events, TIMEOUT),
            (
                vec![(1, T0), (2, T0), (3, T0), (0, T0), (4, T0 + 75 * MIN)],
                state(T0 + 75 * MIN, T0 + 75 * MIN)
            )
        );
    }

    #[test]
    fn s18_5_an_event_before_the_session_but_within_the_timeout_joins_it() {
        assert_eq!(
            assign_key(state(T0, T0 + MIN), &[(0, T0 - 10 * MIN)], TIMEOUT),
            (vec![(0, T0)], state(T0, T0 + MIN))
        );
    }

    #[test]
    fn s18_5_a_late_event_is_out_of_session_and_changes_nothing() {
        assert_eq!(
            assign_key(state(T0, T0 + MIN), &[(0, T0 - TIMEOUT - 1)], TIMEOUT),
            (vec![(0, OUT_OF_SESSION)], state(T0, T0 + MIN))
        );
    }

    #[test]
    fn s18_7_a_replay_within_the_stored_session_gets_the_same_ids() {
        let events = [(0, T0), (1, T0 + 5 * MIN)];
        let (first, after) = assign_key(None, &events, TIMEOUT);
        let (again, unchanged) = assign_key(after, &events, TIMEOUT);
        assert_eq!(first, again);
        assert_eq!(after, unchanged);
    }
}
