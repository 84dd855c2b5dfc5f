//! What only the deletions route does: read the privacy secret (the Amplitude secret key, and
//! the operator token), list Amplitude's deletion jobs (`GET /deletions`), and write one audit
//! line per requested user id.

use amplitude_client::Credentials;
use amplitude_wire::DeletionJob;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::auth::{self, AuthError};
use crate::error::RequestError;
use crate::function::Function;
use crate::inbound::Inbound;
use crate::reply::{Entry, MessageOutcome, Reply};
use crate::secrets::PrivacyKeys;

/// The job listing covers at most about six months (amplitude-api §7.2).
const MAX_RANGE_DAYS: i32 = 184;

impl Function {
    /// The Amplitude secret key from the privacy secret, after `check` accepted the secret:
    /// 501 when deletions are not configured at all (no `PRIVACY_SECRET_ID`, which Segment
    /// does not retry), 503 while its `secret_key` is still empty (retried until it is set).
    async fn secret_key(
        &self,
        deadline: Instant,
        check: impl Fn(&PrivacyKeys) -> Result<(), AuthError>,
    ) -> Result<String, RequestError> {
        let id = self
            .config
            .privacy_secret
            .as_ref()
            .ok_or(RequestError::DeletionsNotConfigured)?;
        let keys = self
            .checked(id, deadline, PrivacyKeys::parse, check)
            .await?;
        keys.secret_key
            .map(|k| k.expose_secret().to_owned())
            .ok_or_else(|| RequestError::SecretKeyNotSetUp(id.clone()))
    }

    /// The credentials of a deletion request: the API key and the secret key.
    pub(crate) async fn deletion_credentials(
        &self,
        api_key: &str,
        deadline: Instant,
    ) -> Result<Credentials, RequestError> {
        let secret_key = self.secret_key(deadline, |_| Ok(())).await?;
        Ok(Credentials::new(api_key).with_secret_key(secret_key))
    }

    /// `GET /deletions?start_day=YYYY-MM-DD&end_day=YYYY-MM-DD`: Amplitude's deletion jobs, so
    /// an operator can prove a deletion ran. It lists user ids, so it needs the operator token
    /// of the privacy secret, not a credential shared with Segment.
    pub(crate) async fn list_deletion_jobs(
        &self,
        inbound: &Inbound,
        api_key: &str,
        deadline: Instant,
    ) -> Result<Reply, RequestError> {
        let header = |name: &str| inbound.header(name);
        let secret_key = self
            .secret_key(deadline, |k| {
                auth::bearer(
                    &header,
                    &k.operator_tokens,
                    AuthError::OperatorTokenRequired,
                )
            })
            .await?;
        let (start, end) = (day(inbound, "start_day")?, day(inbound, "end_day")?);
        if !(0..=MAX_RANGE_DAYS).contains(&(end - start).get_days()) {
            return Err(RequestError::Query(
                "`end_day` must be on or after `start_day`, at most 6 months later".into(),
            ));
        }
        let credentials = Credentials::new(api_key).with_secret_key(secret_key);
        let jobs = self
            .client
            .deletion_jobs(
                self.config.settings.region,
                &credentials,
                &start.to_string(),
                &end.to_string(),
                deadline,
            )
            .await
            .inspect_err(|e| {
                if matches!(e, amplitude_client::JobListError::CredentialsRefused(_)) {
                    self.forget_keys();
                }
            })?;
        Ok(Reply::jobs(jobs))
    }
}

/// A `YYYY-MM-DD` query parameter (only the dashed form Amplitude asks for).
fn day(inbound: &Inbound, name: &str) -> Result<jiff::civil::Date, RequestError> {
    let value = inbound.query(name).unwrap_or_default();
    let dashed = value.len() == 10
        && value.as_bytes().get(4) == Some(&b'-')
        && value.as_bytes().get(7) == Some(&b'-');
    value
        .parse::<jiff::civil::Date>()
        .ok()
        .filter(|_| dashed)
        .ok_or_else(|| RequestError::Query(format!("`{name}` must be a date YYYY-MM-DD")))
}

/// One audit line per user id a deletion was requested for: the id, the day Amplitude
/// scheduled its job, and the outcome. Never the secret key.
pub(crate) fn audit(user_ids: &[Option<String>], entries: &[Entry], jobs: &[DeletionJob]) {
    for (entry, user_id) in entries.iter().zip(user_ids) {
        let Some(user_id) = user_id else {
            continue;
        };
        let outcome = match &entry.outcome {
            MessageOutcome::Delivered => "requested",
            MessageOutcome::Skipped { .. } => "skipped",
            MessageOutcome::Rejected { .. } => "rejected",
            MessageOutcome::Unsupported { .. } => "unsupported",
            MessageOutcome::Retryable { .. } => "retryable",
            MessageOutcome::Queued { .. } => "queued",
        };
        audit_users(std::iter::once(user_id.as_str()), jobs, outcome);
    }
}

/// The audit lines of these user ids, with the day of the Amplitude job that lists each.
pub(crate) fn audit_users<'u>(
    user_ids: impl Iterator<Item = &'u str>,
    jobs: &[DeletionJob],
    outcome: &str,
) {
    for user_id in user_ids {
        let job_day = jobs.iter().find_map(|job| {
            job.amplitude_ids
                .iter()
                .any(|e| e.user_id.as_deref() == Some(user_id))
                .then_some(job.day.as_str())
        });
        tracing::info!(
            audit = "deletion",
            user_id = %user_id,
            job_day = job_day.unwrap_or("none"),
            outcome,
            "deletion audit"
        );
    }
}
