//! A queue message body → a delivery job, and a list of items → a job split into queue
//! messages (see `tests::fuzzing::job`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzzing::job(data));
