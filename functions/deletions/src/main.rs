//! The *deletions* function: Segment `delete` (GDPR) → Amplitude User Privacy API, and
//! `GET /deletions` to list Amplitude's deletion jobs. The only function that reads the
//! privacy secret. All logic lives in `pipeline` and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipeline::run(pipeline::Kind::Ingest(pipeline::Route::Deletions)).await
}
