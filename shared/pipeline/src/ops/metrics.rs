//! What each invocation did, as metrics: CloudWatch **Embedded Metric Format** log lines on
//! AWS (no `PutMetricData` call on the hot path: no latency, no cost, no extra permission), and
//! counters in process for the local runner's `GET /_metrics` (Prometheus text format).
//!
//! One EMF line per invocation with the route's counts (dimension `Route`), plus one line per
//! Amplitude endpoint the invocation called (dimensions `Route`, `Endpoint`): an EMF document
//! has one value per dimension. Dimensions are kept to those two, so CloudWatch's cost stays
//! flat.
//!
//! The format is written with a few serde structs here rather than the `metrics` facade and an
//! EMF exporter: one document per invocation needs no global recorder or flushing, and the
//! structs are shorter than the glue, and smaller in the binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use amplitude_client::Report;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::delivery::Tally;

/// At most this many values of one metric in one EMF document (CloudWatch's limit).
const MAX_VALUES: usize = 100;
/// The level metric lines carry, for Lambda's log-level filter: they survive an application
/// log level of WARN (the template allows no higher).
pub const METRICS_LEVEL: &str = "WARN";

/// The statuses Segment drops without a retry.
fn is_dropped(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 405 | 413 | 501)
}

/// What one invocation sent to one Amplitude endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointCounts {
    pub requests: u64,
    pub status_2xx: u64,
    pub status_4xx: u64,
    pub status_429: u64,
    pub status_5xx: u64,
    /// No answer: a timeout, a reset, a refused connection.
    pub no_answer: u64,
    /// Milliseconds per request.
    pub latency_ms: Vec<f64>,
    /// Items per request.
    pub items_per_request: Vec<f64>,
}

impl EndpointCounts {
    /// The requests by status class, each with its EMF metric name and its `/_metrics` label.
    fn statuses(&self) -> [(&'static str, &'static str, u64); 5] {
        [
            ("AmplitudeStatus2xx", "2xx", self.status_2xx),
            ("AmplitudeStatus4xx", "4xx", self.status_4xx),
            ("AmplitudeStatus429", "429", self.status_429),
            ("AmplitudeStatus5xx", "5xx", self.status_5xx),
            ("AmplitudeNoAnswer", "none", self.no_answer),
        ]
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    pub route: &'static str,
    /// The HTTP status the request was answered (ingest functions).
    pub status: Option<u16>,
    /// Messages by what became of them.
    pub messages: Tally,
    pub endpoints: BTreeMap<&'static str, EndpointCounts>,
    pub duration: Duration,
    /// Events given a synthesised session, and events that needed one but went without
    /// because the store failed (spec §18.8); both 0 unless `sessionize` is on.
    pub sessions: SessionCounts,
}

/// Events of the sessions stage (spec §18).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    pub assigned: u64,
    pub degraded: u64,
}

impl Invocation {
    pub fn new(route: &'static str) -> Self {
        Invocation {
            route,
            ..Invocation::default()
        }
    }

    /// Counts the requests a delivery sent.
    pub fn count_requests(&mut self, report: &Report) {
        for r in &report.requests {
            let e = self.endpoints.entry(r.endpoint.as_str()).or_default();
            e.requests += 1;
            match r.status {
                None => e.no_answer += 1,
                Some(429) => e.status_429 += 1,
                Some(200..=299) => e.status_2xx += 1,
                Some(500..=599) => e.status_5xx += 1,
                Some(_) => e.status_4xx += 1,
            }
            e.latency_ms.push(r.latency.as_secs_f64() * 1000.0);
            e.items_per_request.push(r.items as f64);
        }
    }

    /// True when the request was answered with a status Segment drops without a retry (400,
    /// 401, 403, 404, 405, 413, 501): its messages are lost unless the sender fixes something.
    pub fn refused(&self) -> bool {
        self.status.is_some_and(is_dropped)
    }

    /// The EMF documents of this invocation, one JSON line each.
    pub fn emf(&self, namespace: &str, timestamp_ms: u64) -> Vec<String> {
        let mut route = Document::new(namespace, timestamp_ms, &["Route"]);
        route.dimension("Route", self.route);
        for (name, _, value) in self.messages.named() {
            route.metric(name, "Count", Value::from(value));
        }
        if self.status.is_some() {
            route.metric(
                "RequestsRefused",
                "Count",
                Value::from(u64::from(self.refused())),
            );
        }
        if self.sessions != SessionCounts::default() {
            route.metric(
                "SessionsAssigned",
                "Count",
                Value::from(self.sessions.assigned),
            );
            route.metric(
                "SessionsDegraded",
                "Count",
                Value::from(self.sessions.degraded),
            );
        }
        route.metric(
            "InvocationLatency",
            "Milliseconds",
            Value::from(self.duration.as_secs_f64() * 1000.0),
        );
        let mut lines = vec![route.line()];
        if let Some(status) = self.status {
            // By status: one metric per status that occurs (a dimension), not one per possible
            // status.
            let mut doc = Document::new(namespace, timestamp_ms, &["Route", "Status"]);
            doc.dimension("Route", self.route);
            doc.dimension("Status", &status.to_string());
            doc.metric("Requests", "Count", Value::from(1));
            lines.push(doc.line());
        }
        for (endpoint, e) in &self.endpoints {
            let mut doc = Document::new(namespace, timestamp_ms, &["Route", "Endpoint"]);
            doc.dimension("Route", self.route);
            doc.dimension("Endpoint", endpoint);
            doc.metric("AmplitudeRequests", "Count", Value::from(e.requests));
            for (name, _, value) in e.statuses() {
                doc.metric(name, "Count", Value::from(value));
            }
            doc.metric("AmplitudeLatency", "Milliseconds", values(&e.latency_ms));
            doc.metric("EventsPerRequest", "Count", values(&e.items_per_request));
            lines.push(doc.line());
        }
        lines
    }
}

/// One value, or an array of at most [`MAX_VALUES`] (CloudWatch computes percentiles from them).
fn values(list: &[f64]) -> Value {
    match list {
        [one] => Value::from(*one),
        _ => Value::from(list.iter().take(MAX_VALUES).copied().collect::<Vec<f64>>()),
    }
}

/// An EMF document: `{"_aws": {"Timestamp", "CloudWatchMetrics": [directive]}, <dimensions>,
/// <metrics>}`.
struct Document {
    aws: Aws,
    members: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws {
    timestamp: u64,
    cloud_watch_metrics: [Directive; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive {
    namespace: String,
    dimensions: [Vec<&'static str>; 1],
    metrics: Vec<MetricDefinition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDefinition {
    name: &'static str,
    unit: &'static str,
}

impl Document {
    fn new(namespace: &str, timestamp: u64, dimensions: &[&'static str]) -> Self {
        Document {
            aws: Aws {
                timestamp,
                cloud_watch_metrics: [Directive {
                    namespace: namespace.to_owned(),
                    dimensions: [dimensions.to_vec()],
                    metrics: Vec::new(),
                }],
            },
            members: Map::new(),
        }
    }

    fn dimension(&mut self, name: &str, value: &str) {
        self.members.insert(name.to_owned(), Value::from(value));
    }

    fn metric(&mut self, name: &'static str, unit: &'static str, value: Value) {
        let [directive] = &mut self.aws.cloud_watch_metrics;
        directive.metrics.push(MetricDefinition { name, unit });
        self.members.insert(name.to_owned(), value);
    }

    fn line(self) -> String {
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            serde_json::to_value(&self.aws).expect("EMF metadata serialises"),
        );
        // Lambda's log-level filter treats a JSON line without a level as INFO: with the
        // function's application log level at WARN it would drop every metric.
        root.insert("level".into(), Value::from(METRICS_LEVEL));
        root.extend(self.members);
        Value::Object(root).to_string()
    }
}

/// Where an invocation's metrics go.
pub enum Sink {
    /// EMF lines on standard output, under this namespace (the deployed functions).
    Emf { namespace: String },
    /// Counters in process (the local runner's `/_metrics`).
    Registry(std::sync::Arc<Registry>),
}

impl Sink {
    pub fn record(&self, invocation: &Invocation) {
        match self {
            Sink::Emf { namespace } => {
                let now = crate::ops::now_ms();
                let mut out = String::new();
                for line in invocation.emf(namespace, now) {
                    out.push_str(&line);
                    out.push('\n');
                }
                // One write: the lines of concurrent invocations never interleave.
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
            }
            Sink::Registry(registry) => registry.record(invocation),
        }
    }
}

/// Counters summed over invocations, for `GET /_metrics` (Prometheus text format 0.0.4).
///
/// Messages by outcome and Amplitude requests by status class are counters; durations and
/// events per request are summaries without quantiles (`_sum` and `_count`), from which a
/// scraper computes averages.
#[derive(Default)]
pub struct Registry {
    /// (family, labels) → (sum, count); a counter's count is unused.
    series: Mutex<BTreeMap<(Family, String), (f64, u64)>>,
}

/// A metric family of the registry, in the order `/_metrics` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Invocations,
    Requests,
    Messages,
    SessionEvents,
    InvocationSeconds,
    AmplitudeRequests,
    AmplitudeRequestSeconds,
    EventsPerRequest,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Invocations => "segment_amplitude_invocations_total",
            Family::Requests => "segment_amplitude_requests_total",
            Family::Messages => "segment_amplitude_messages_total",
            Family::SessionEvents => "segment_amplitude_session_events_total",
            Family::InvocationSeconds => "segment_amplitude_invocation_seconds",
            Family::AmplitudeRequests => "segment_amplitude_amplitude_requests_total",
            Family::AmplitudeRequestSeconds => "segment_amplitude_amplitude_request_seconds",
            Family::EventsPerRequest => "segment_amplitude_events_per_request",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Family::Invocations => "Invocations, by route.",
            Family::Requests => {
                "Requests answered, by route and status (refused: a status Segment drops)."
            }
            Family::Messages => "Segment messages, by route and what became of them.",
            Family::SessionEvents => {
                "Events that needed a synthesised session: assigned, or degraded (the store failed)."
            }
            Family::InvocationSeconds => "Time to handle an invocation, by route.",
            Family::AmplitudeRequests => {
                "Requests to Amplitude, by route, endpoint and status class (none: no answer)."
            }
            Family::AmplitudeRequestSeconds => "Time of a request to Amplitude.",
            Family::EventsPerRequest => {
                "Items (events, identifications, ids) per Amplitude request."
            }
        }
    }

    fn is_summary(self) -> bool {
        matches!(
            self,
            Family::InvocationSeconds | Family::AmplitudeRequestSeconds | Family::EventsPerRequest
        )
    }
}

impl Registry {
    pub fn record(&self, inv: &Invocation) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut add = |family: Family, labels: String, values: &[f64]| {
            let (sum, count) = series.entry((family, labels)).or_default();
            *sum += values.iter().sum::<f64>();
            *count += values.len() as u64;
        };
        let route = inv.route;
        add(Family::Invocations, format!("route=\"{route}\""), &[1.0]);
        if let Some(status) = inv.status {
            let refused = inv.refused();
            add(
                Family::Requests,
                format!("route=\"{route}\",status=\"{status}\",refused=\"{refused}\""),
                &[1.0],
            );
        }
        for (_, outcome, n) in inv.messages.named() {
            add(
                Family::Messages,
                format!("route=\"{route}\",outcome=\"{outcome}\""),
                &[n as f64],
            );
        }
        if inv.sessions != SessionCounts::default() {
            for (outcome, n) in [
                ("assigned", inv.sessions.assigned),
                ("degraded", inv.sessions.degraded),
            ] {
                add(
                    Family::SessionEvents,
                    format!("route=\"{route}\",outcome=\"{outcome}\""),
                    &[n as f64],
                );
            }
        }
        add(
            Family::InvocationSeconds,
            format!("route=\"{route}\""),
            &[inv.duration.as_secs_f64()],
        );
        for (endpoint, e) in &inv.endpoints {
            for (_, status, n) in e.statuses() {
                add(
                    Family::AmplitudeRequests,
                    format!("route=\"{route}\",endpoint=\"{endpoint}\",status=\"{status}\""),
                    &[n as f64],
                );
            }
            let at = format!("route=\"{route}\",endpoint=\"{endpoint}\"");
            let seconds: Vec<f64> = e.latency_ms.iter().map(|ms| ms / 1000.0).collect();
            add(Family::AmplitudeRequestSeconds, at.clone(), &seconds);
            add(Family::EventsPerRequest, at, &e.items_per_request);
        }
    }

    /// Everything counted so far, in Prometheus text format.
    pub fn prometheus(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last = None;
        for ((family, labels), (sum, count)) in series.iter() {
            let name = family.name();
            if last != Some(*family) {
                let kind = if family.is_summary() {
                    "summary"
                } else {
                    "counter"
                };
                let _ = writeln!(out, "# HELP {name} {}", family.help());
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = Some(*family);
            }
            if family.is_summary() {
                let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
                let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {sum}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An `/events` invocation: 5 messages, two requests to `/2/httpapi` (one throttled).
    fn sample() -> Invocation {
        let mut inv = Invocation::new("events");
        inv.messages = Tally {
            received: 5,
            delivered: 2,
            skipped: 1,
            rejected_mapping: 1,
            retryable: 1,
            throttled: 1,
            ..Tally::default()
        };
        inv.endpoints.insert(
            "httpapi",
            EndpointCounts {
                requests: 2,
                status_2xx: 1,
                status_429: 1,
                latency_ms: vec![250.0, 500.0],
                items_per_request: vec![3.0, 1.0],
                ..EndpointCounts::default()
            },
        );
        inv.duration = Duration::from_millis(45);
        inv
    }

    /// What CloudWatch requires of an EMF document (it drops a malformed one without a word):
    /// `_aws.Timestamp` in ms, one directive with a namespace, every dimension a string member,
    /// every metric a number or at most 100 numbers, units CloudWatch knows.
    fn assert_valid_emf(doc: &Value) {
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].is_u64(), "{doc}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        for d in directives {
            assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
            for set in d["Dimensions"].as_array().expect("dimension sets") {
                let set = set.as_array().expect("a dimension set");
                assert!(set.len() <= 30);
                for name in set {
                    assert!(
                        doc[name.as_str().expect("a name")].is_string(),
                        "{name} in {doc}"
                    );
                }
            }
            for m in d["Metrics"].as_array().expect("metrics") {
                let name = m["Name"].as_str().expect("a metric name");
                assert!(["Count", "Milliseconds"].contains(&m["Unit"].as_str().unwrap()));
                match &doc[name] {
                    Value::Number(_) => {}
                    Value::Array(values) => {
                        assert!(!values.is_empty() && values.len() <= MAX_VALUES);
                        assert!(values.iter().all(Value::is_number));
                    }
                    other => panic!("metric {name} is {other}"),
                }
            }
        }
    }

    #[test]
    fn emf_lines_have_the_exact_shape() {
        let lines = sample().emf("SegmentAmplitude", 1_700_000_000_000);
        let docs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert!(lines.iter().all(|l| !l.contains('\n')));
        docs.iter().for_each(assert_valid_emf);
        let count = |names: &[&str]| -> Vec<Value> {
            names
                .iter()
                .map(|n| json!({"Name": n, "Unit": "Count"}))
                .collect()
        };
        let mut route_metrics = count(&[
            "Received",
            "Delivered",
            "Skipped",
            "Unsupported",
            "RejectedMapping",
            "RejectedAmplitude",
            "RefusedAmplitude",
            "Retryable",
            "Throttled",
            "Queued",
            "DeadLettered",
        ]);
        route_metrics.push(json!({"Name": "InvocationLatency", "Unit": "Milliseconds"}));
        let mut endpoint_metrics = count(&[
            "AmplitudeRequests",
            "AmplitudeStatus2xx",
            "AmplitudeStatus4xx",
            "AmplitudeStatus429",
            "AmplitudeStatus5xx",
            "AmplitudeNoAnswer",
        ]);
        endpoint_metrics.push(json!({"Name": "AmplitudeLatency", "Unit": "Milliseconds"}));
        endpoint_metrics.push(json!({"Name": "EventsPerRequest", "Unit": "Count"}));
        assert_eq!(
            docs,
            vec![
                json!({
                    "_aws": {"Timestamp": 1_700_000_000_000u64, "CloudWatchMetrics": [{
                        "Namespace": "SegmentAmplitude",
                        "Dimensions": [["Route"]],
                        "Metrics": route_metrics,
                    }]},
                    "level": "WARN",
                    "Route": "events",
                    "Received": 5, "Delivered": 2, "Skipped": 1, "Unsupported": 0,
                    "RejectedMapping": 1, "RejectedAmplitude": 0, "RefusedAmplitude": 0,
                    "Retryable": 1, "Throttled": 1, "Queued": 0, "DeadLettered": 0,
                    "InvocationLatency": 45.0,
                }),
                json!({
                    "_aws": {"Timestamp": 1_700_000_000_000u64, "CloudWatchMetrics": [{
                        "Namespace": "SegmentAmplitude",
                        "Dimensions": [["Route", "Endpoint"]],
                        "Metrics": endpoint_metrics,
                    }]},
                    "level": "WARN",
                    "Route": "events",
                    "Endpoint": "httpapi",
                    "AmplitudeRequests": 2, "AmplitudeStatus2xx": 1, "AmplitudeStatus4xx": 0,
                    "AmplitudeStatus429": 1, "AmplitudeStatus5xx": 0, "AmplitudeNoAnswer": 0,
                    "AmplitudeLatency": [250.0, 500.0],
                    "EventsPerRequest": [3.0, 1.0],
                }),
            ]
        );
    }

    /// Spec §18.8: the events that needed a session are counted, assigned or degraded, in
    /// the route's EMF document and in `/_metrics`; without `sessionize` neither appears.
    #[test]
    fn session_events_are_counted_only_when_sessions_are_on() {
        let mut inv = Invocation::new("events");
        let first: Value = serde_json::from_str(&inv.emf("Ns", 1)[0]).unwrap();
        assert_eq!(first.get("SessionsDegraded"), None);
        inv.sessions = SessionCounts {
            assigned: 7,
            degraded: 3,
        };
        let doc: Value = serde_json::from_str(&inv.emf("Ns", 1)[0]).unwrap();
        assert_valid_emf(&doc);
        assert_eq!(
            (&doc["SessionsAssigned"], &doc["SessionsDegraded"]),
            (&json!(7), &json!(3))
        );
        let registry = Registry::default();
        registry.record(&inv);
        let text = registry.prometheus();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("segment_amplitude_session_events_total"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"segment_amplitude_session_events_total{route="events",outcome="assigned"} 7"#,
                r#"segment_amplitude_session_events_total{route="events",outcome="degraded"} 3"#,
            ]
        );
    }

    #[test]
    fn emf_keeps_one_value_as_a_number_and_at_most_100_values() {
        let mut inv = sample();
        let e = inv.endpoints.get_mut("httpapi").unwrap();
        e.latency_ms = vec![7.0];
        e.items_per_request = (0..150).map(f64::from).collect();
        let lines = inv.emf("Ns", 1);
        let doc: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_valid_emf(&doc);
        assert_eq!(doc["AmplitudeLatency"], json!(7.0));
        assert_eq!(doc["EventsPerRequest"].as_array().unwrap().len(), 100);
    }

    /// Issue "first deploy" §8: a request answered with a status Segment drops counts as
    /// refused, and every answer is counted by its status; the lines pass Lambda's log-level
    /// filter at WARN (a JSON line without a level counts as INFO there).
    #[test]
    fn requests_are_counted_by_status_and_refusals_apart() {
        let mut inv = Invocation::new("events");
        inv.status = Some(401);
        let docs: Vec<Value> = inv
            .emf("Ns", 1)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        docs.iter().for_each(assert_valid_emf);
        assert_eq!(docs[0]["RequestsRefused"], 1);
        assert_eq!(
            (&docs[1]["Route"], &docs[1]["Status"], &docs[1]["Requests"]),
            (&json!("events"), &json!("401"), &json!(1))
        );
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Route", "Status"]])
        );
        assert!(docs.iter().all(|d| d["level"] == "WARN"));
        inv.status = Some(503);
        let first: Value = serde_json::from_str(&inv.emf("Ns", 1)[0]).unwrap();
        assert_eq!(first["RequestsRefused"], 0, "Segment retries a 503");
        let registry = Registry::default();
        inv.status = Some(413);
        registry.record(&inv);
        assert!(registry.prometheus().contains(
            "segment_amplitude_requests_total{route=\"events\",status=\"413\",refused=\"true\"} 1"
        ));
    }

    #[test]
    fn an_invocation_without_requests_writes_the_route_line_only() {
        let mut inv = Invocation::new("alias");
        inv.messages.received = 1;
        inv.messages.unsupported = 1;
        assert_eq!(inv.emf("Ns", 1).len(), 1);
    }

    #[test]
    fn the_registry_sums_invocations_in_prometheus_text_format() {
        let registry = Registry::default();
        registry.record(&sample());
        registry.record(&sample());
        let text = registry.prometheus();
        let expected = "\
# HELP segment_amplitude_invocations_total Invocations, by route.
# TYPE segment_amplitude_invocations_total counter
segment_amplitude_invocations_total{route=\"events\"} 2
# HELP segment_amplitude_messages_total Segment messages, by route and what became of them.
# TYPE segment_amplitude_messages_total counter
segment_amplitude_messages_total{route=\"events\",outcome=\"dead_lettered\"} 0
segment_amplitude_messages_total{route=\"events\",outcome=\"delivered\"} 4
segment_amplitude_messages_total{route=\"events\",outcome=\"queued\"} 0
segment_amplitude_messages_total{route=\"events\",outcome=\"received\"} 10
segment_amplitude_messages_total{route=\"events\",outcome=\"refused_amplitude\"} 0
segment_amplitude_messages_total{route=\"events\",outcome=\"rejected_amplitude\"} 0
segment_amplitude_messages_total{route=\"events\",outcome=\"rejected_mapping\"} 2
segment_amplitude_messages_total{route=\"events\",outcome=\"retryable\"} 2
segment_amplitude_messages_total{route=\"events\",outcome=\"skipped\"} 2
segment_amplitude_messages_total{route=\"events\",outcome=\"throttled\"} 2
segment_amplitude_messages_total{route=\"events\",outcome=\"unsupported\"} 0
# HELP segment_amplitude_invocation_seconds Time to handle an invocation, by route.
# TYPE segment_amplitude_invocation_seconds summary
segment_amplitude_invocation_seconds_sum{route=\"events\"} 0.09
segment_amplitude_invocation_seconds_count{route=\"events\"} 2
# HELP segment_amplitude_amplitude_requests_total Requests to Amplitude, by route, endpoint and status class (none: no answer).
# TYPE segment_amplitude_amplitude_requests_total counter
segment_amplitude_amplitude_requests_total{route=\"events\",endpoint=\"httpapi\",status=\"2xx\"} 2
segment_amplitude_amplitude_requests_total{route=\"events\",endpoint=\"httpapi\",status=\"429\"} 2
segment_amplitude_amplitude_requests_total{route=\"events\",endpoint=\"httpapi\",status=\"4xx\"} 0
segment_amplitude_amplitude_requests_total{route=\"events\",endpoint=\"httpapi\",status=\"5xx\"} 0
segment_amplitude_amplitude_requests_total{route=\"events\",endpoint=\"httpapi\",status=\"none\"} 0
# HELP segment_amplitude_amplitude_request_seconds Time of a request to Amplitude.
# TYPE segment_amplitude_amplitude_request_seconds summary
segment_amplitude_amplitude_request_seconds_sum{route=\"events\",endpoint=\"httpapi\"} 1.5
segment_amplitude_amplitude_request_seconds_count{route=\"events\",endpoint=\"httpapi\"} 4
# HELP segment_amplitude_events_per_request Items (events, identifications, ids) per Amplitude request.
# TYPE segment_amplitude_events_per_request summary
segment_amplitude_events_per_request_sum{route=\"events\",endpoint=\"httpapi\"} 8
segment_amplitude_events_per_request_count{route=\"events\",endpoint=\"httpapi\"} 4
";
        assert_eq!(text, expected);
    }
}
