//! The *alias* function: alias → Amplitude User Mapping (`/usermap`), including unmap.
//! All logic lives in `pipeline` and the mapping crate.

/// Large blocks in mappings of their own: a warm instance holds what a fresh one would.
#[global_allocator]
static ALLOCATOR: pipeline::ops::memory::Allocator = pipeline::ops::memory::Allocator;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipeline::run(pipeline::Kind::Ingest(pipeline::Route::Alias)).await
}
