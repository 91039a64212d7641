#![no_main]
// Scanner + every decode function of the daren_485 protocol (see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::protocol("daren_485", data));
