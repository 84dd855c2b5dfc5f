//! One JSON line → the mapping under several settings → the wire items (see
//! `tests::fuzzing::map_line`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzzing::map_line(data));
