//! The *deletions* function: Segment `delete` (GDPR) → Amplitude User Privacy API, and
//! `GET /deletions` to list Amplitude's deletion jobs. The only function that reads the
//! privacy secret. All logic lives in `lambda-glue` and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::run(lambda_glue::Route::Deletions).await
}
