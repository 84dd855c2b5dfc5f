//! Encoding: a mapped message's requests become [`Item`]s, each one event, identification,
//! mapping or deletion id already in the bytes it takes on the wire. Batches are then just
//! concatenations, so their exact size is known before anything is sent.

use mapping::amplitude::Identification;
use mapping::{Body, Endpoint, Plan, Request};

/// One unit Amplitude accepts or rejects on its own.
#[derive(Debug, Clone)]
pub struct Item {
    /// Index of the Segment message (in the caller's list) this item came from.
    pub message: usize,
    pub endpoint: Endpoint,
    /// The item as it appears inside the request body: JSON for JSON endpoints, URL-encoded
    /// JSON for form endpoints, a JSON string (the user id) for deletions. Always UTF-8 text,
    /// so it can be stored as it is and sent later.
    pub wire: String,
    /// For throttling: Amplitude throttles by user and by device.
    pub user_id: Option<String>,
    pub device_id: Option<String>,
}

/// Turns one message's plan into items, in the plan's order.
pub fn items(message: usize, plan: &Plan<'_>) -> Vec<Item> {
    Items::new(message, plan).collect()
}

/// The items of one message's plan, encoded one at a time, in the plan's order: a message that
/// becomes many large items never needs them all in memory at once.
pub struct Items<'p, 'a> {
    message: usize,
    plan: &'p Plan<'a>,
    request: usize,
    element: usize,
}

impl<'p, 'a> Items<'p, 'a> {
    pub fn new(message: usize, plan: &'p Plan<'a>) -> Self {
        Items {
            message,
            plan,
            request: 0,
            element: 0,
        }
    }

    /// The item at `element` of `request`'s body, if there is one.
    fn encode(&self, request: &Request<'_>, element: usize) -> Option<Item> {
        let item = |wire: String, user: Option<&str>, device: Option<&str>| Item {
            message: self.message,
            endpoint: request.endpoint,
            wire,
            user_id: user.map(str::to_owned),
            device_id: device.map(str::to_owned),
        };
        Some(match &request.body {
            Body::Events(events) => {
                let e = events.get(element)?;
                item(
                    json(e),
                    e.device.user_id.as_deref(),
                    e.device.device_id.as_deref(),
                )
            }
            Body::Identify(ids) => {
                let i = ids.get(element)?;
                let (user, device) = match i {
                    Identification::User(u) => {
                        (u.device.user_id.as_deref(), u.device.device_id.as_deref())
                    }
                    Identification::GroupLink(g) => (g.user_id.as_deref(), g.device_id.as_deref()),
                };
                item(form(&json(i)), user, device)
            }
            Body::GroupIdentify(ids) => item(form(&json(ids.get(element)?)), None, None),
            Body::UserMap(maps) => {
                let m = maps.get(element)?;
                item(form(&json(m)), Some(&m.user_id), None)
            }
            Body::Deletion(d) => {
                let id = d.user_ids.get(element)?;
                item(json(id), Some(id), None)
            }
        })
    }
}

impl Iterator for Items<'_, '_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            let request = self.plan.requests.get(self.request)?;
            match self.encode(request, self.element) {
                Some(item) => {
                    self.element += 1;
                    return Some(item);
                }
                None => {
                    self.request += 1;
                    self.element = 0;
                }
            }
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("mapped objects always serialise")
}

/// `application/x-www-form-urlencoded` text of a value. Byte-wise, so the encoding of a
/// concatenation is the concatenation of the encodings.
pub fn form(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// How a batch of items is framed for its endpoint.
pub struct Frame {
    pub prefix: Vec<u8>,
    pub separator: &'static [u8],
    pub suffix: Vec<u8>,
    pub content_type: &'static str,
}

impl Frame {
    /// `options.min_id_length` is sent only when the operator sets it (spec §2.3); `requester`
    /// is what Amplitude records on deletions.
    pub fn new(
        endpoint: Endpoint,
        api_key: &str,
        min_id_length: Option<u32>,
        requester: &str,
    ) -> Self {
        let key_json = serde_json::to_string(api_key).expect("a string serialises");
        let options_json = min_id_length.map(|n| format!("{{\"min_id_length\":{n}}}"));
        match endpoint {
            Endpoint::HttpApi | Endpoint::Batch => Frame {
                prefix: format!("{{\"api_key\":{key_json},\"events\":[").into_bytes(),
                separator: b",",
                suffix: match &options_json {
                    Some(o) => format!("],\"options\":{o}}}").into_bytes(),
                    None => b"]}".to_vec(),
                },
                content_type: "application/json",
            },
            Endpoint::Identify | Endpoint::GroupIdentify | Endpoint::UserMap => {
                let field = if endpoint == Endpoint::UserMap {
                    "mapping"
                } else {
                    "identification"
                };
                let mut prefix = b"api_key=".to_vec();
                prefix.extend(form(api_key).bytes());
                prefix.extend(format!("&{field}=%5B").bytes());
                let mut suffix = b"%5D".to_vec();
                if let Some(o) = &options_json {
                    suffix.extend(b"&options=");
                    suffix.extend(form(o).bytes());
                }
                Frame {
                    prefix,
                    separator: b"%2C",
                    suffix,
                    content_type: "application/x-www-form-urlencoded",
                }
            }
            Endpoint::Deletion => {
                let requester = serde_json::to_string(requester).expect("a string serialises");
                Frame {
                    prefix: b"{\"user_ids\":[".to_vec(),
                    separator: b",",
                    // Both spellings: the docs disagree on the name (amplitude-api §7.1). With
                    // it on, an id Amplitude does not know is reported, not a 400 for all.
                    suffix: format!(
                        "],\"requester\":{requester},\"ignore_invalid_id\":true,\"ignore_invalid_ids\":true}}"
                    )
                    .into_bytes(),
                    content_type: "application/json",
                }
            }
        }
    }

    /// Size of a body holding items of these wire sizes.
    pub fn size(&self, wire_sizes: impl Iterator<Item = usize>) -> usize {
        let mut n: usize = 0;
        let mut total = self.prefix.len() + self.suffix.len();
        for s in wire_sizes {
            total += s;
            n += 1;
        }
        total + n.saturating_sub(1) * self.separator.len()
    }

    /// The request body.
    pub fn body<'i>(&self, wires: impl Iterator<Item = &'i str> + Clone) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.size(wires.clone().map(str::len)));
        body.extend_from_slice(&self.prefix);
        for (i, w) in wires.enumerate() {
            if i > 0 {
                body.extend_from_slice(self.separator);
            }
            body.extend_from_slice(w.as_bytes());
        }
        body.extend_from_slice(&self.suffix);
        body
    }
}
