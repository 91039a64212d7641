#![no_main]
// Scanner + every decode function of the daly_ble protocol (see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::protocol("daly_ble", data));
