#![no_main]
// Scanner + every decode function of the jk_rs485 protocol (see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::protocol("jk_rs485", data));
