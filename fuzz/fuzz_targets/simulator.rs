#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| leasedlock_fuzz::sim::run(data));
