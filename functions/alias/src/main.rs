//! The *alias* function: alias → Amplitude User Mapping (`/usermap`), including unmap.
//! All logic lives in `pipeline` and the mapping crate.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipeline::run(pipeline::Kind::Ingest(pipeline::Route::Alias)).await
}
