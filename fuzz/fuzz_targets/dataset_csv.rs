//! libFuzzer entry for `corex_fuzz::dataset_csv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corex_fuzz::dataset_csv(data));
