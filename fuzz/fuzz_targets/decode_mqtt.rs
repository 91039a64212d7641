#![no_main]
// The Generic MQTT JSON codec (see fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::mqtt_json(data));
