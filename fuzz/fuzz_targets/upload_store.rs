//! libFuzzer entry for `corex_fuzz::upload_store`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corex_fuzz::upload_store(data));
