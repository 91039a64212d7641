//! The bodies of `ItemsChanged` (`a{sa{sv}}`) and `PropertiesChanged` (`a{sv}`), marshalled by
//! hand in little-endian D-Bus wire format (D-Bus specification, "Marshaling (Wire Format)").
//!
//! Why: a publish sends one `ItemsChanged` per battery and reading, and building it through zbus
//! (a `HashMap<&str, HashMap<&str, Value>>`, then serde with signatures parsed at run time, in
//! two passes: size, then bytes) was a sixth of the daemon's CPU (docs/performance.md, "Per
//! reading"). Here each value and text goes straight into one buffer, the texts formatted in
//! place. Pure: items in, bytes out. The tests decode every body with zbus' own deserializer.
//!
//! The body starts at offset 0 of its buffer; in a message it starts 8-aligned (after the
//! header's padding), so every alignment below is the same in the message.

use super::paths::Item;
use super::value::Value;
use std::fmt::Write as _;

/// Signature of the `ItemsChanged` body.
pub const ITEMS_CHANGED_SIGNATURE: &str = "a{sa{sv}}";
/// Signature of the `PropertiesChanged` body.
pub const PROPERTIES_CHANGED_SIGNATURE: &str = "a{sv}";

/// `ItemsChanged`: every changed path with its value and text.
pub fn items_changed<'a>(changes: impl IntoIterator<Item = (&'a str, &'a Item)>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(4096));
    w.array(8, |w| {
        for (path, item) in changes {
            w.align(8);
            w.string(path);
            w.entry(item);
        }
    });
    w.0
}

/// `PropertiesChanged` of one path: its value and text.
pub fn properties_changed(item: &Item) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.entry(item);
    w.0
}

struct Writer(Vec<u8>);

impl Writer {
    fn align(&mut self, to: usize) {
        let len = self.0.len();
        self.0.resize(len.next_multiple_of(to), 0);
    }

    fn u32_at(&mut self, at: usize, value: u32) {
        if let Some(slot) = self.0.get_mut(at..at + 4) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
    }

    /// An array of elements aligned to `element_align`: the length counts the elements' bytes,
    /// not the padding between the length and the first element.
    fn array(&mut self, element_align: usize, elements: impl FnOnce(&mut Self)) {
        self.align(4);
        let length_at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        self.align(element_align);
        let start = self.0.len();
        elements(self);
        let length = u32::try_from(self.0.len() - start).unwrap_or(u32::MAX);
        self.u32_at(length_at, length);
    }

    /// A `s`: length, UTF-8 bytes, NUL. D-Bus strings cannot hold a NUL; one inside is left out.
    fn string(&mut self, text: &str) {
        self.formatted(|out| out.write_str(text));
    }

    /// A `s` whose text `write` formats in place.
    fn formatted(&mut self, write: impl FnOnce(&mut NulFree<'_>) -> std::fmt::Result) {
        self.align(4);
        let length_at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        let start = self.0.len();
        // Writing into a Vec cannot fail.
        let _ = write(&mut NulFree(&mut self.0));
        let length = u32::try_from(self.0.len() - start).unwrap_or(u32::MAX);
        self.u32_at(length_at, length);
        self.0.push(0);
    }

    /// A `g` (a signature: one length byte, no alignment).
    fn signature(&mut self, signature: &[u8]) {
        self.0.push(signature.len() as u8);
        self.0.extend_from_slice(signature);
        self.0.push(0);
    }

    /// The `a{sv}` of one item: `Value` (`d`, `i`, `s`, or an empty `ai` when invalid) and
    /// `Text`, as velib's `GetItems` and `ItemsChanged` carry them.
    fn entry(&mut self, item: &Item) {
        self.array(8, |w| {
            w.align(8);
            w.string("Value");
            match &item.value {
                Value::F64(v) => {
                    w.signature(b"d");
                    w.align(8);
                    w.0.extend_from_slice(&v.to_le_bytes());
                }
                Value::I32(v) => {
                    w.signature(b"i");
                    w.align(4);
                    w.0.extend_from_slice(&v.to_le_bytes());
                }
                Value::Text(text) => {
                    w.signature(b"s");
                    w.string(text);
                }
                Value::Invalid => {
                    w.signature(b"ai");
                    w.array(4, |_| {});
                }
            }
            w.align(8);
            w.string("Text");
            w.signature(b"s");
            w.formatted(|out| item.value.write_display(item.unit, out));
        });
    }
}

/// Text into the buffer, NUL characters left out.
struct NulFree<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for NulFree<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if s.contains('\0') {
            self.0.extend(s.bytes().filter(|b| *b != 0));
        } else {
            self.0.extend_from_slice(s.as_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
