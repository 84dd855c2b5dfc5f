//! `segment-amplitude dlq inspect --queue-url URL`: what the dead-letter queue holds, one line
//! per job (endpoint, messages, age, attempts, route, why it gave up), never a key, so an
//! operator can decide before replaying it with SQS's redrive.
//!
//! Messages are read with a short visibility timeout (`--visibility-seconds`, 30 by default) and
//! not deleted: they are back in the queue, unchanged, when it ends.

use std::collections::HashSet;
use std::time::Duration;

use pipeline::durable::{DeadLetter, Job};

/// One line per dead-lettered job, and a total. Each message read stays hidden for
/// `visibility` seconds (nothing else reads the dead-letter queue), so a listing sees each once.
pub async fn inspect(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    max: usize,
    visibility: i32,
) -> Result<String, String> {
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    let (mut jobs, mut messages) = (0, 0);
    let now = pipeline::ops::now_ms();
    while seen.len() < max {
        let out = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_sqs::error::ProvideErrorMetadata;
                format!(
                    "dlq: cannot read the queue ({})",
                    e.code().unwrap_or("could not reach SQS")
                )
            })?;
        let batch = out.messages();
        let fresh: Vec<_> = batch
            .iter()
            .filter(|m| seen.insert(m.message_id.clone().unwrap_or_default()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for m in fresh {
            let body = m.body.as_deref().unwrap_or_default();
            lines.push(match DeadLetter::decode(body) {
                Some(DeadLetter::Job(job)) => {
                    jobs += 1;
                    messages += job.message_ids.len();
                    describe(&job, now)
                }
                Some(DeadLetter::Unreadable(u)) => format!(
                    "unreadable message of {} bytes (sha1 {}): {}",
                    u.bytes, u.sha1, u.dead_letter_reason
                ),
                None => "unreadable message: not a delivery job".to_owned(),
            });
        }
    }
    lines.push(format!(
        "{jobs} job(s), {messages} message(s) in the dead-letter queue{}",
        if seen.len() >= max {
            " (stopped at --max)"
        } else {
            ""
        }
    ));
    Ok(lines.join("\n"))
}

fn describe(job: &Job, now: u64) -> String {
    format!(
        "{:<13} {:>5} message(s)  age {:<8} attempts {:<4} route {:<10} {}",
        job.endpoint.as_str(),
        job.message_ids.len(),
        human(job.age(now)),
        job.attempts,
        job.route.path(),
        job.dead_letter_reason
            .as_deref()
            .unwrap_or(&job.last_reason)
    )
}

/// `3d 4h`, `2h 13m`, `45m 10s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        86_400.. => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        3600.. => format!("{}h {}m", s / 3600, s % 3600 / 60),
        60.. => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        let h = |s| human(Duration::from_secs(s));
        assert_eq!(
            (h(12), h(2710), h(7980), h(273_600)),
            (
                "12s".into(),
                "45m 10s".into(),
                "2h 13m".into(),
                "3d 4h".into()
            )
        );
    }
}
