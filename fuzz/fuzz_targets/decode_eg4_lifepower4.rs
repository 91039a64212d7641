#![no_main]
// Scanner + every decode function of the eg4_lifepower4 protocol (see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::protocol("eg4_lifepower4", data));
