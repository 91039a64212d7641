#![no_main]
// Every protocol of the registry (bms::ALL): the input names it or its first byte picks one.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::registry(data));
