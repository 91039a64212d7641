#![no_main]
// SetValue value conversion: any D-Bus variant on every writable path.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_common::set_value(data);
});
