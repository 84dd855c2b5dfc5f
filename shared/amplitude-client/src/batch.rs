//! Batching: as few requests as Amplitude's limits allow, keeping one message's items together
//! and in order.

use std::collections::HashMap;

use mapping::Endpoint;

use crate::encode::{Frame, Item};

/// Per-request limits of an endpoint (amplitude-api §2.5, §3–§7). Where the docs can be read
/// two ways ("fewer than 2000" vs "up to 2,000"), the stricter reading is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_items: usize,
    pub max_bytes: usize,
    /// The most items of one user, or of one device, in a request.
    pub max_per_id: usize,
}

/// The most events or identifications of one user or device in a request to an endpoint that
/// throttles at 30 a second per user and per device, averaged over a window (amplitude-api
/// §2.5; §3 gives the window as 30 seconds, so 900): a third of that allowance. Amplitude
/// refuses a request whole (429) when it would take a user past the allowance, so a request
/// holding more than the allowance for one user is refused however long the sender waits: a
/// Segment batch of 1,000 events of one user was held, queued and resent as it was until it
/// was dead-lettered. Now such a user's events go 300 a request; what Amplitude throttles is
/// held and sent after its delay, and the next requests get through as the window moves.
pub const MAX_PER_ID_AT_30_EPS: usize = 300;

impl Limits {
    pub fn of(endpoint: Endpoint) -> Limits {
        let (max_items, max_bytes, max_per_id) = match endpoint {
            // "< 2000 events" and "< 1 MB"; 30 events a second per user and device.
            Endpoint::HttpApi => (1999, 999_999, MAX_PER_ID_AT_30_EPS),
            // "2000 events", "20 MB"; 1,000 a second per user and device over 30 s, more than
            // a request holds.
            Endpoint::Batch => (2000, 20_000_000, usize::MAX),
            // Undocumented count; our own cap (amplitude-api §4 [Derived]). Throttled "as in
            // HTTP V2".
            Endpoint::Identify => (1000, 999_999, MAX_PER_ID_AT_30_EPS),
            Endpoint::GroupIdentify => (1024, 999_999, usize::MAX),
            Endpoint::UserMap => (2000, 999_999, usize::MAX),
            Endpoint::Deletion => (100, 999_999, usize::MAX),
        };
        Limits {
            max_items,
            max_bytes,
            max_per_id,
        }
    }
}

/// The fewest requests Amplitude's limits allow for these items (a true lower bound, for
/// benchmarks): per endpoint, the larger of the count bound and the byte bound.
pub fn minimum_requests(items: &[Item], api_key: &str) -> usize {
    let mut total = 0;
    for endpoint in Endpoint::ALL {
        let of: Vec<&Item> = items.iter().filter(|i| i.endpoint == endpoint).collect();
        if of.is_empty() {
            continue;
        }
        let limits = Limits::of(endpoint);
        let frame = Frame::new(endpoint, api_key, None, crate::DEFAULT_REQUESTER);
        let overhead = frame.prefix.len() + frame.suffix.len();
        let bytes: usize = of
            .iter()
            .map(|i| i.wire.len() + frame.separator.len())
            .sum();
        total += of
            .len()
            .div_ceil(limits.max_items)
            .max(bytes.div_ceil(limits.max_bytes - overhead));
    }
    total
}

/// Packs item indices (all of one endpoint, in message order) into batches.
/// A message's items go into the current batch if they all fit; otherwise a new batch starts.
/// A message too big for one batch is split across consecutive batches, still in order.
pub fn pack(items: &[Item], indices: &[usize], frame: &Frame, limits: Limits) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = frame.prefix.len() + frame.suffix.len();
    let sep = frame.separator.len();
    let cost = |i: usize, first: bool| items[i].wire.len() + if first { 0 } else { sep };
    // Items of each user and device in the current batch (users and devices apart), and in
    // the message being placed (one map for all messages: most have a single item).
    let mut per_id: HashMap<(bool, &str), usize> = HashMap::new();
    let mut group_ids: HashMap<(bool, &str), usize> = HashMap::new();
    let ids = |i: usize| {
        let item = &items[i];
        [
            item.user_id.as_deref().map(|u| (true, u)),
            item.device_id.as_deref().map(|d| (false, d)),
        ]
        .into_iter()
        .flatten()
    };

    let mut start = 0;
    while start < indices.len() {
        let message = items[indices[start]].message;
        let end = indices[start..]
            .iter()
            .position(|&i| items[i].message != message)
            .map_or(indices.len(), |p| start + p);
        let group = &indices[start..end];
        let group_bytes: usize = group
            .iter()
            .enumerate()
            .map(|(k, &i)| cost(i, current.is_empty() && k == 0))
            .sum();
        group_ids.clear();
        for &i in group {
            for id in ids(i) {
                *group_ids.entry(id).or_default() += 1;
            }
        }
        let fits = current.len() + group.len() <= limits.max_items
            && bytes + group_bytes <= limits.max_bytes
            && group_ids
                .iter()
                .all(|(id, n)| per_id.get(id).copied().unwrap_or(0) + n <= limits.max_per_id);
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            bytes = frame.prefix.len() + frame.suffix.len();
            per_id.clear();
        }
        for &i in group {
            let c = cost(i, current.is_empty());
            let crowded =
                ids(i).any(|id| per_id.get(&id).copied().unwrap_or(0) >= limits.max_per_id);
            let full = current.len() + 1 > limits.max_items || bytes + c > limits.max_bytes;
            if (full || crowded) && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                bytes = frame.prefix.len() + frame.suffix.len();
                per_id.clear();
            }
            bytes += cost(i, current.is_empty());
            current.push(i);
            for id in ids(i) {
                *per_id.entry(id).or_default() += 1;
            }
        }
        start = end;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(message: usize, size: usize) -> Item {
        Item {
            message,
            endpoint: Endpoint::HttpApi,
            wire: "x".repeat(size),
            user_id: None,
            device_id: None,
        }
    }

    fn frame() -> Frame {
        Frame::new(Endpoint::HttpApi, "k", None, "segment")
    }

    #[test]
    fn messages_stay_together_when_they_fit() {
        let items: Vec<Item> = [(0, 10), (1, 10), (1, 10), (2, 10)]
            .iter()
            .map(|&(m, s)| item(m, s))
            .collect();
        let idx: Vec<usize> = (0..4).collect();
        let b = pack(
            &items,
            &idx,
            &frame(),
            Limits {
                max_items: 2,
                max_bytes: 1000,
                max_per_id: usize::MAX,
            },
        );
        assert_eq!(b, vec![vec![0], vec![1, 2], vec![3]]);
    }

    #[test]
    fn byte_limit_counts_frame_and_separators_exactly() {
        let f = frame();
        let overhead = f.prefix.len() + f.suffix.len();
        let items: Vec<Item> = (0..3).map(|m| item(m, 10)).collect();
        let idx: Vec<usize> = (0..3).collect();
        let limits = Limits {
            max_items: 100,
            max_bytes: overhead + 21,
            max_per_id: usize::MAX,
        };
        assert_eq!(pack(&items, &idx, &f, limits), vec![vec![0, 1], vec![2]]);
        let body = f.body([items[0].wire.as_str(), items[1].wire.as_str()].into_iter());
        assert_eq!(body.len(), overhead + 21);
        assert_eq!(f.size([10, 10].into_iter()), body.len());
    }

    /// One user's burst goes at most `max_per_id` items a request (of that user or that
    /// device; users and devices counted apart), others' items beside them, in order.
    #[test]
    fn a_request_holds_at_most_max_per_id_items_of_one_user_or_device() {
        let of = |message: usize, user: Option<&str>, device: Option<&str>| Item {
            user_id: user.map(str::to_owned),
            device_id: device.map(str::to_owned),
            ..item(message, 10)
        };
        let items = vec![
            of(0, Some("u"), None),
            of(1, Some("u"), Some("d")),
            of(2, Some("v"), Some("u")),
            of(3, Some("u"), None),
            of(4, None, Some("d")),
            of(5, None, Some("d")),
            of(6, Some("w"), Some("d")),
        ];
        let idx: Vec<usize> = (0..items.len()).collect();
        let limits = Limits {
            max_items: 100,
            max_bytes: 10_000,
            max_per_id: 2,
        };
        assert_eq!(
            pack(&items, &idx, &frame(), limits),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]
        );
        assert_eq!(Limits::of(Endpoint::HttpApi).max_per_id, 300);
        assert_eq!(Limits::of(Endpoint::Identify).max_per_id, 300);
        assert_eq!(Limits::of(Endpoint::Batch).max_per_id, usize::MAX);
    }

    #[test]
    fn an_oversized_message_is_split_in_order() {
        let items: Vec<Item> = (0..5).map(|_| item(0, 1)).collect();
        let idx: Vec<usize> = (0..5).collect();
        let b = pack(
            &items,
            &idx,
            &frame(),
            Limits {
                max_items: 2,
                max_bytes: 1000,
                max_per_id: usize::MAX,
            },
        );
        assert_eq!(b, vec![vec![0, 1], vec![2, 3], vec![4]]);
    }
}
