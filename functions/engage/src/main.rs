//! The *engage* function: Engage audience and computed-trait syncs → Amplitude user
//! properties (Identify API). All logic lives in `lambda-glue` and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::run(lambda_glue::Route::Engage).await
}
