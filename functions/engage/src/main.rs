//! The *engage* function: Engage audience and computed-trait syncs → Amplitude user
//! properties (Identify API). All logic lives in `pipeline` and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipeline::run(pipeline::Kind::Ingest(pipeline::Route::Engage)).await
}
