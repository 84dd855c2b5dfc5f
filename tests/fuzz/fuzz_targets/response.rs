//! An answer of Amplitude's, or of a server that misbehaves, → the retry policy's verdict (see
//! `tests::fuzzing::response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzzing::response(data));
