//! libFuzzer entry for `corex_fuzz::job_spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corex_fuzz::job_spec(data));
