//! libFuzzer entry for `corex_fuzz::result_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corex_fuzz::result_frame(data));
