#![no_main]
// Scanner + every decode function of the jbd_ble protocol (see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::protocol("jbd_ble", data));
