//! What arrives at a function: an API Gateway HTTP API (payload 2.0) or REST API (1.0) proxy
//! event, or a direct invocation whose payload is the Segment body itself (Segment's "AWS
//! Lambda" destination). All become one [`Inbound`] request.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use base64::Engine;
use serde_json::Value;

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
    /// The raw body bytes (base64 already decoded).
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InboundError {
    #[error("body: `isBase64Encoded` is true but the body is not valid base64")]
    BadBase64,
    #[error("the API Gateway event is malformed ({0})")]
    BadEvent(String),
}

impl Inbound {
    /// Recognises the payload's shape: API Gateway events have `requestContext`; anything else
    /// is a direct invocation carrying a Segment body.
    pub fn from_payload(payload: Value) -> Result<Inbound, InboundError> {
        let has_context = payload.get("requestContext").is_some();
        if has_context && payload.get("version").and_then(Value::as_str) == Some("2.0") {
            let req: ApiGatewayV2httpRequest = serde_json::from_value(payload)
                .map_err(|e| InboundError::BadEvent(e.to_string()))?;
            let body = decode(req.body.as_deref(), req.is_base64_encoded)?;
            return Ok(Inbound {
                source: Source::HttpApi,
                method: req.request_context.http.method.to_string(),
                path: req.raw_path.unwrap_or_default(),
                headers: headers(&req.headers),
                query: req
                    .query_string_parameters
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                body,
            });
        }
        if has_context && payload.get("httpMethod").is_some() {
            let req: ApiGatewayProxyRequest = serde_json::from_value(payload)
                .map_err(|e| InboundError::BadEvent(e.to_string()))?;
            let body = decode(req.body.as_deref(), req.is_base64_encoded)?;
            return Ok(Inbound {
                source: Source::RestApi,
                method: req.http_method.to_string(),
                path: req.path.unwrap_or_default(),
                headers: headers(&req.headers),
                query: req
                    .query_string_parameters
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                body,
            });
        }
        Ok(Inbound {
            source: Source::Direct,
            method: "POST".into(),
            path: String::new(),
            headers: Vec::new(),
            query: Vec::new(),
            body: serde_json::to_vec(&payload).expect("a JSON value serialises"),
        })
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
}

fn headers(map: &aws_lambda_events::http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))
        })
        .collect()
}

fn decode(body: Option<&str>, base64: bool) -> Result<Vec<u8>, InboundError> {
    let body = body.unwrap_or_default();
    if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|_| InboundError::BadBase64)
    } else {
        Ok(body.as_bytes().to_vec())
    }
}
