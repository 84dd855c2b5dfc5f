//! The User Privacy API's job listing (amplitude-api §7.2), through the same sending loop as
//! deliveries, so it keeps the deletion endpoint's one-request-per-second spacing.

use amplitude_wire::DeletionJob;
use mapping::{Endpoint, Region};
use tokio::time::Instant;

use crate::policy::Verdict;
use crate::send::Resolution;
use crate::{AmplitudeClient, Credentials};

/// Why the job list could not be read. None of these carries a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobListError {
    /// Amplitude refused the API key or secret key: refresh the secrets.
    #[error("configuration: {0}")]
    CredentialsRefused(String),
    /// Amplitude refused the request (any other non-transient answer).
    #[error("{0}")]
    Refused(String),
    /// Amplitude failed or did not answer before the deadline.
    #[error("{0}")]
    Unavailable(String),
    #[error("Amplitude answered a job list that is not a list of jobs")]
    Malformed,
}

impl AmplitudeClient {
    /// The deletion jobs Amplitude scheduled between two days (`YYYY-MM-DD`).
    pub async fn deletion_jobs(
        &self,
        region: Region,
        credentials: &Credentials,
        start_day: &str,
        end_day: &str,
        deadline: Instant,
    ) -> Result<Vec<DeletionJob>, JobListError> {
        let endpoint = Endpoint::Deletion;
        let base = crate::target_url(self.shared.config.base_url.as_deref(), endpoint, region);
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("start_day", start_day)
            .append_pair("end_day", end_day)
            .finish();
        let url = format!("{base}?{query}");
        let mut records = Vec::new();
        let resolution = self
            .shared
            .send_with_retries(endpoint, 0, deadline, &mut records, |timeout| {
                self.shared
                    .http
                    .get(&url)
                    .basic_auth(credentials.api_key(), credentials.secret_key())
                    .timeout(timeout)
            })
            .await;
        let (verdict, body) = match resolution {
            Resolution::Answered { verdict, body } => (*verdict, body),
            Resolution::GaveUp { reason } => return Err(JobListError::Unavailable(reason)),
        };
        match verdict {
            Verdict::Delivered => {
                serde_json::from_slice(&body).map_err(|_| JobListError::Malformed)
            }
            Verdict::CredentialsRefused { reason } => Err(JobListError::CredentialsRefused(reason)),
            Verdict::RequestRefused { reason }
            | Verdict::Isolate { reason }
            | Verdict::Retry { reason } => Err(JobListError::Refused(reason)),
            Verdict::DropListed { .. } | Verdict::TooLarge | Verdict::Throttled(_) => Err(
                JobListError::Refused("Amplitude refused the job list request".into()),
            ),
        }
    }
}
