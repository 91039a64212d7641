//! A fake `com.victronenergy.settings` (localsettings) for the tests that need one.

use std::collections::HashMap;
use zbus::zvariant::{OwnedValue, Str};

/// `AddSettings` answers every `ClassAndVrmInstance` with `battery:3` and every other setting
/// with `stored` (the value localsettings already holds for it).
pub struct FakeSettings {
    pub stored: &'static str,
}

#[zbus::interface(name = "com.victronenergy.Settings")]
impl FakeSettings {
    async fn add_settings(
        &self,
        definitions: Vec<HashMap<String, OwnedValue>>,
    ) -> Vec<HashMap<String, OwnedValue>> {
        definitions
            .iter()
            .map(|definition| {
                let path: String = definition["path"].try_clone().unwrap().try_into().unwrap();
                let value = if path.ends_with("/ClassAndVrmInstance") { "battery:3" } else { self.stored };
                HashMap::from([
                    ("path".to_owned(), OwnedValue::from(Str::from(path))),
                    ("error".to_owned(), OwnedValue::from(0i32)),
                    ("value".to_owned(), OwnedValue::from(Str::from(value))),
                ])
            })
            .collect()
    }
}
