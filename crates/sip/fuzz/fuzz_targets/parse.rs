//! libFuzzer entry point: every input goes through the shared harness.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sip_fuzz::check(data);
});
