//! The privacy secret's operations: the Amplitude secret key that deletions need (from the
//! privacy secret, which only the deletions function may read), and `GET /deletions`, which
//! lists Amplitude's deletion jobs for the operator (with the operator token). The audit line
//! per requested user id is written by the settlement, for ingest and redelivery alike.

use amplitude_client::Credentials;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::function::Function;
use crate::ingest::auth::{self, AuthError};
use crate::ingest::error::RequestError;
use crate::ingest::inbound::Inbound;
use crate::ingest::reply::Reply;
use crate::ops::secrets::PrivacyKeys;

/// The job listing covers at most about six months (amplitude-api §7.2).
const MAX_RANGE_DAYS: i32 = 184;

impl Function {
    /// The Amplitude secret key from the privacy secret, after `check` accepted the secret:
    /// 501 when deletions are not configured at all (no `PRIVACY_SECRET_ID`, which Segment
    /// does not retry), 503 while its `secret_key` is still empty (retried until it is set).
    /// `final_mismatch`: a refusal by `check` that no rotated secret could mend
    /// ([`Function::checked`]).
    async fn secret_key(
        &self,
        deadline: Instant,
        check: impl Fn(&PrivacyKeys) -> Result<(), AuthError>,
        final_mismatch: bool,
    ) -> Result<String, RequestError> {
        let id = self
            .config
            .privacy_secret
            .as_ref()
            .ok_or(RequestError::DeletionsNotConfigured)?;
        let keys = self
            .checked(id, deadline, PrivacyKeys::parse, check, final_mismatch)
            .await?;
        keys.secret_key
            .map(|k| k.expose_secret().to_owned())
            .ok_or_else(|| RequestError::SecretKeyNotSetUp(id.clone()))
    }

    /// The credentials a delivery needs: the API key, and the secret key when it holds
    /// deletions.
    pub(crate) async fn credentials(
        &self,
        api_key: &str,
        deletions: bool,
        deadline: Instant,
    ) -> Result<Credentials, RequestError> {
        let credentials = Credentials::new(api_key);
        if !deletions {
            return Ok(credentials);
        }
        let secret_key = self.secret_key(deadline, |_| Ok(()), false).await?;
        Ok(credentials.with_secret_key(secret_key))
    }

    /// `GET /deletions?start_day=YYYY-MM-DD&end_day=YYYY-MM-DD`: Amplitude's deletion jobs, so
    /// an operator can prove a deletion ran. It lists user ids, so it needs the operator token
    /// of the privacy secret, not a credential shared with Segment.
    pub(crate) async fn list_deletion_jobs(
        &self,
        inbound: &Inbound,
        deadline: Instant,
    ) -> Result<Reply, RequestError> {
        let keys = self
            .secrets
            .ingest(&self.config.ingest_secret, deadline)
            .await?;
        let api_key = keys.api_key.expose_secret();
        let header = |name: &str| inbound.header(name);
        // Without a bearer token (no Authorization header, another scheme, an empty token) no
        // operator token, rotated or not, can pass: the refusal is final, without reading the
        // secret again (which a request with a new token may need) or answering "cannot tell
        // yet".
        let no_token = auth::bearer_token(&header).is_none();
        let secret_key = self
            .secret_key(
                deadline,
                |k| {
                    auth::bearer(
                        &header,
                        &k.operator_tokens,
                        AuthError::OperatorTokenRequired,
                    )
                },
                no_token,
            )
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
