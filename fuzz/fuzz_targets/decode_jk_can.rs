#![no_main]
// Every CAN frame decoder of jk_can (11- or 29-bit id; see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::can("jk_can", data));
