//! libFuzzer entry for `corex_fuzz::tensor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corex_fuzz::tensor(data));
