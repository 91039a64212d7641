#![no_main]
// The TOML config parser and validator on any text.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::config(data));
