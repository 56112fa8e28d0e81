//! libFuzzer entry for `corex_fuzz::dataset_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corex_fuzz::dataset_bytes(data));
