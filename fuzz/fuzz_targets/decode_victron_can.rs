#![no_main]
// Every CAN frame decoder of victron_can (id from the first two bytes; see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::can("victron_can", data));
