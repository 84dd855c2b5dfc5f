//! What arrives at a function: an API Gateway HTTP API (payload 2.0) or REST API (1.0) proxy
//! event, or a direct invocation whose payload is the Segment body itself (Segment's "AWS
//! Lambda" destination). The payload is read once into [`LambdaRequest`], then into one
//! [`Inbound`] request whatever its source.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use aws_lambda_events::http::HeaderMap;
use base64::Engine;
use serde_json::{Value, json};

/// The three shapes a function is invoked with.
#[derive(Debug)]
pub enum LambdaRequest {
    HttpApi(Box<ApiGatewayV2httpRequest>),
    RestApi(Box<ApiGatewayProxyRequest>),
    /// Segment's AWS Lambda destination: the payload is the Segment body.
    Direct(Value),
}

/// Where a request came from; it decides the response shape and whether it is authenticated
/// by IAM (direct invocation) or must carry Segment's credentials (API Gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    HttpApi,
    RestApi,
    Direct,
}

/// One request, whatever its source.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub source: Source,
    pub method: String,
    pub path: String,
    /// Header names lower-cased, for case-insensitive lookup.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// The body (base64 already decoded).
    pub body: Payload,
    /// API Gateway's id of the request (its access log names it).
    pub gateway_request_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InboundError {
    #[error("body: `isBase64Encoded` is true but the body is not valid base64")]
    BadBase64,
    /// The answer names no detail: it could quote the caller's bytes (a header value). The
    /// detail, without them, goes to the log.
    #[error(
        "the API Gateway event is malformed (a header, the query string or the request context)"
    )]
    BadEvent {
        /// What kind of error and where in the event, never the offending value.
        detail: String,
    },
}

impl InboundError {
    fn bad_event(e: &serde_json::Error) -> InboundError {
        InboundError::BadEvent {
            detail: format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        }
    }
}

impl LambdaRequest {
    /// Recognises the payload's shape: API Gateway events have `requestContext` (with
    /// `version: "2.0"` for HTTP APIs, `httpMethod` for REST APIs); anything else is a direct
    /// invocation carrying a Segment body.
    pub fn from_payload(payload: Value) -> Result<Self, InboundError> {
        let bad = |e: serde_json::Error| InboundError::bad_event(&e);
        let has_context = payload.get("requestContext").is_some();
        if has_context && payload.get("version").and_then(Value::as_str) == Some("2.0") {
            return serde_json::from_value(payload)
                .map(|r| LambdaRequest::HttpApi(Box::new(r)))
                .map_err(bad);
        }
        if has_context && payload.get("httpMethod").is_some() {
            return serde_json::from_value(payload)
                .map(|r| LambdaRequest::RestApi(Box::new(r)))
                .map_err(bad);
        }
        Ok(LambdaRequest::Direct(payload))
    }

    pub fn source(&self) -> Source {
        match self {
            LambdaRequest::HttpApi(_) => Source::HttpApi,
            LambdaRequest::RestApi(_) => Source::RestApi,
            LambdaRequest::Direct(_) => Source::Direct,
        }
    }
}

impl TryFrom<LambdaRequest> for Inbound {
    type Error = InboundError;

    fn try_from(request: LambdaRequest) -> Result<Self, InboundError> {
        let source = request.source();
        let (method, path, headers, query, body, base64, gateway_request_id) = match request {
            LambdaRequest::HttpApi(r) => (
                r.request_context.http.method.to_string(),
                r.raw_path.unwrap_or_default(),
                r.headers,
                r.query_string_parameters,
                r.body,
                r.is_base64_encoded,
                r.request_context.request_id,
            ),
            LambdaRequest::RestApi(r) => (
                r.http_method.to_string(),
                r.path.unwrap_or_default(),
                r.headers,
                r.query_string_parameters,
                r.body,
                r.is_base64_encoded,
                r.request_context.request_id,
            ),
            LambdaRequest::Direct(payload) => {
                return Ok(Inbound {
                    source,
                    method: "POST".into(),
                    path: String::new(),
                    headers: Vec::new(),
                    query: Vec::new(),
                    body: Payload::Text(payload.to_string()),
                    gateway_request_id: None,
                });
            }
        };
        Ok(Inbound {
            source,
            method,
            path,
            headers: header_list(&headers),
            query: query
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            body: decode(body, base64)?,
            gateway_request_id,
        })
    }
}

impl Inbound {
    /// Reads a Lambda payload.
    pub fn from_payload(payload: Value) -> Result<Inbound, InboundError> {
        LambdaRequest::from_payload(payload)?.try_into()
    }

    /// A header's value, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request id the sender put in `X-Request-Id` (or `X-Segment-Request-Id`), if any:
    /// Segment documents none for its webhooks, but proxies and Destination Functions set one.
    pub fn sender_request_id(&self) -> Option<&str> {
        self.header("x-segment-request-id")
            .or_else(|| self.header("x-request-id"))
    }

    /// True for `GET` (the deletion job listing).
    pub fn is_get(&self) -> bool {
        self.method.eq_ignore_ascii_case("GET")
    }
}

fn header_list(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))
        })
        .collect()
}

/// A request's body: text as it came in the event (moved, not copied, and known to be UTF-8:
/// it can be 6 MB), or the bytes a base64 body decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    Bytes(Vec<u8>),
}

impl Payload {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(t) => t.as_bytes(),
            Payload::Bytes(b) => b,
        }
    }

    /// The body as text, checking only bytes that did not come as text.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        match self {
            Payload::Text(t) => Ok(t),
            Payload::Bytes(b) => std::str::from_utf8(b),
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn decode(body: Option<String>, base64: bool) -> Result<Payload, InboundError> {
    let body = body.unwrap_or_default();
    if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map(Payload::Bytes)
            .map_err(|_| InboundError::BadBase64)
    } else {
        Ok(Payload::Text(body))
    }
}

/// The HTTP API (payload 2.0) event API Gateway sends a function for one HTTP request. The
/// local runner turns every request it serves into one; tests build theirs with it too. A body
/// that is not UTF-8 travels base64-encoded, and a header or query parameter given twice is
/// one value, the values joined by commas, as API Gateway sends them.
pub fn http_api_event<'h>(
    method: &str,
    path: &str,
    query: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    body: &[u8],
    request_id: &str,
) -> Value {
    let (text, base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let headers = joined(
        headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned())),
    );
    let parameters = joined(
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    let route_key = format!("{method} {path}");
    json!({
        "version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": query,
        "headers": headers, "queryStringParameters": parameters,
        "requestContext": {"accountId": "000000000000", "apiId": "local",
            "domainName": "127.0.0.1", "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1", "userAgent": ""},
            "requestId": request_id, "routeKey": route_key, "stage": "$default", "time": "",
            "timeEpoch": 0},
        "body": text, "isBase64Encoded": base64
    })
}

/// Names and values as payload 2.0 has them: one value per name, a repeated name's values
/// joined by commas in the order given.
fn joined(pairs: impl Iterator<Item = (String, String)>) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    for (name, value) in pairs {
        match map.get_mut(&name) {
            Some(Value::String(earlier)) => {
                earlier.push(',');
                earlier.push_str(&value);
            }
            _ => {
                map.insert(name, Value::String(value));
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payload 2.0 as API Gateway builds it: a header or query parameter given twice is one
    /// value, joined by commas in the order given (so the local runner sees two
    /// `Authorization` headers as a deployed function does, not only the last), names of
    /// headers in lower case.
    #[test]
    fn a_repeated_header_or_parameter_is_one_value_joined_by_commas() {
        let event = http_api_event(
            "POST",
            "/events",
            "a=1&b=2&a=3",
            [
                ("Authorization", "Bearer first"),
                ("X-Signature", "00"),
                ("authorization", "Bearer second"),
            ],
            b"{}",
            "r-1",
        );
        assert_eq!(
            event["headers"],
            json!({"authorization": "Bearer first,Bearer second", "x-signature": "00"})
        );
        assert_eq!(
            event["queryStringParameters"],
            json!({"a": "1,3", "b": "2"})
        );
    }
}
