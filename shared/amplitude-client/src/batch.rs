//! Batching: as few requests as Amplitude's limits allow, keeping one message's items together
//! and in order.

use mapping::Endpoint;

use crate::encode::{Frame, Item};

/// Per-request limits of an endpoint (amplitude-api §2.5, §3–§7). Where the docs can be read
/// two ways ("fewer than 2000" vs "up to 2,000"), the stricter reading is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_items: usize,
    pub max_bytes: usize,
}

impl Limits {
    pub fn of(endpoint: Endpoint) -> Limits {
        let (max_items, max_bytes) = match endpoint {
            // "< 2000 events" and "< 1 MB".
            Endpoint::HttpApi => (1999, 999_999),
            // "2000 events", "20 MB".
            Endpoint::Batch => (2000, 20_000_000),
            // Undocumented count; our own cap (amplitude-api §4 [Derived]).
            Endpoint::Identify => (1000, 999_999),
            Endpoint::GroupIdentify => (1024, 999_999),
            Endpoint::UserMap => (2000, 999_999),
            Endpoint::Deletion => (100, 999_999),
        };
        Limits {
            max_items,
            max_bytes,
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
        let fits = current.len() + group.len() <= limits.max_items
            && bytes + group_bytes <= limits.max_bytes;
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            bytes = frame.prefix.len() + frame.suffix.len();
        }
        for &i in group {
            let c = cost(i, current.is_empty());
            let full = current.len() + 1 > limits.max_items || bytes + c > limits.max_bytes;
            if full && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                bytes = frame.prefix.len() + frame.suffix.len();
            }
            bytes += cost(i, current.is_empty());
            current.push(i);
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
        };
        assert_eq!(pack(&items, &idx, &f, limits), vec![vec![0, 1], vec![2]]);
        let body = f.body([items[0].wire.as_str(), items[1].wire.as_str()].into_iter());
        assert_eq!(body.len(), overhead + 21);
        assert_eq!(f.size([10, 10].into_iter()), body.len());
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
            },
        );
        assert_eq!(b, vec![vec![0, 1], vec![2, 3], vec![4]]);
    }
}
