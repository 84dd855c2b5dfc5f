//! The *alias* function: alias → Amplitude User Mapping (`/usermap`), including unmap.
//! All logic lives in `lambda-glue` and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::run(lambda_glue::Route::Alias).await
}
