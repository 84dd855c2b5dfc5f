//! The *events* function: track, page, screen, identify (Engage identifies too) and group →
//! Amplitude HTTP V2 / Batch, Identify and Group Identify. All logic lives in `pipeline`
//! and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipeline::run(pipeline::Kind::Ingest(pipeline::Route::Events)).await
}
