//! The *events* function: track, page, screen, identify (Engage identifies too) and group →
//! Amplitude HTTP V2 / Batch, Identify and Group Identify. All logic lives in `lambda-glue`
//! and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::run(lambda_glue::Route::Events).await
}
