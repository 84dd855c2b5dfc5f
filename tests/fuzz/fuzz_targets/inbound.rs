//! A raw request (headers and body) → inbound parsing, body splitting, authentication and
//! planning (see `tests::fuzzing::inbound`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzzing::inbound(data));
