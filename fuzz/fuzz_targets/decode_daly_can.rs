#![no_main]
// Every CAN frame decoder of daly_can (29-bit id from the first four bytes; see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::can("daly_can", data));
