//! libFuzzer entry for `corex_fuzz::request_signature`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corex_fuzz::request_signature(data));
