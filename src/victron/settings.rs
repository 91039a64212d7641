//! Device instance and custom name from Venus' `com.victronenergy.settings` (localsettings,
//! `victron-dbus.md` §5).
//!
//! One `AddSettings` call on `/` creates (or returns the stored) `ClassAndVrmInstance` and
//! `CustomName` under `/Settings/Devices/<uid>/`. Without a settings service (a plain Linux box,
//! the demo, tests) the fallback instance is used and a written custom name lasts only until the
//! process exits.

use std::collections::HashMap;
use std::time::Duration;
use zbus::zvariant::{self, OwnedValue};
use zbus::Connection;

/// Bus name of localsettings.
pub const SETTINGS_SERVICE: &str = "com.victronenergy.settings";
/// Interface of its `AddSettings`.
pub const SETTINGS_INTERFACE: &str = "com.victronenergy.Settings";
/// How long a settings call may take before we carry on without it.
pub const SETTINGS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the settings service could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The call failed (no owner of the name, access denied, connection lost ...).
    #[error("call to {SETTINGS_SERVICE} failed")]
    Call(#[source] zbus::Error),
    /// No answer within [`SETTINGS_TIMEOUT`].
    #[error("{SETTINGS_SERVICE} did not answer within {SETTINGS_TIMEOUT:?}")]
    Timeout,
    /// It answered, but not with what we asked for.
    #[error("unexpected answer from {SETTINGS_SERVICE}: {0}")]
    BadReply(String),
}

/// What was loaded at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// `/DeviceInstance`.
    pub device_instance: i32,
    /// Stored `/CustomName`, `None` when the settings service was not used.
    pub custom_name: Option<String>,
}

/// Settings key of one battery: `bmsbridge_` + the unique id with everything outside
/// `[A-Za-z0-9_]` turned into `_` (localsettings refuses `/` inside an id, and an element starting
/// with `_`; the prefix keeps the element starting with a letter).
pub fn settings_uid(unique_id: &str) -> String {
    let safe: String =
        unique_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    format!("bmsbridge_{safe}")
}

fn instance_path(uid: &str) -> String {
    format!("/Settings/Devices/{uid}/ClassAndVrmInstance")
}

fn custom_name_path(uid: &str) -> String {
    format!("/Settings/Devices/{uid}/CustomName")
}

/// The instance of `"battery:N"`; `None` for another class or a malformed value.
pub fn parse_class_and_instance(value: &str) -> Option<i32> {
    let (class, instance) = value.split_once(':')?;
    (class == "battery").then_some(())?;
    instance.trim().parse().ok().filter(|n| *n >= 0)
}

/// Device instance and custom name from the settings service, or the fallback instance (with a
/// warning) when it is absent or answers badly.
pub async fn load(connection: &Connection, uid: &str, fallback_instance: i32) -> Loaded {
    match add_settings(connection, uid, fallback_instance).await {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::warn!(
                error = %error_chain(&error),
                fallback_instance,
                "settings service unavailable: using the fallback device instance; \
                 a custom name written now lasts only until bms-bridge exits"
            );
            Loaded { device_instance: fallback_instance, custom_name: None }
        }
    }
}

async fn add_settings(conn: &Connection, uid: &str, fallback: i32) -> Result<Loaded, SettingsError> {
    let instance_path = instance_path(uid);
    let name_path = custom_name_path(uid);
    let definition = |path: &str, default: String| {
        HashMap::from([
            ("path", zvariant::Value::from(path.to_owned())),
            ("default", zvariant::Value::from(default)),
        ])
    };
    let definitions = vec![
        definition(&instance_path, format!("battery:{fallback}")),
        definition(&name_path, String::new()),
    ];
    let body = (definitions,);
    let call = conn.call_method(Some(SETTINGS_SERVICE), "/", Some(SETTINGS_INTERFACE), "AddSettings", &body);
    let reply = tokio::time::timeout(SETTINGS_TIMEOUT, call)
        .await
        .map_err(|_| SettingsError::Timeout)?
        .map_err(SettingsError::Call)?;
    let results: Vec<HashMap<String, OwnedValue>> =
        reply.body().deserialize().map_err(SettingsError::Call)?;
    let text_of = |path: &str| -> Result<String, SettingsError> {
        let result = results
            .iter()
            .find(|r| r.get("path").and_then(|p| p.downcast_ref::<String>().ok()).as_deref() == Some(path))
            .ok_or_else(|| SettingsError::BadReply(format!("no result for {path}")))?;
        let error = result.get("error").and_then(|e| e.downcast_ref::<i32>().ok());
        if error != Some(0) {
            return Err(SettingsError::BadReply(format!("{path}: error {error:?}")));
        }
        result
            .get("value")
            .and_then(|v| v.downcast_ref::<String>().ok())
            .ok_or_else(|| SettingsError::BadReply(format!("{path}: value is not a string")))
    };
    let class_and_instance = text_of(&instance_path)?;
    let device_instance = parse_class_and_instance(&class_and_instance)
        .ok_or_else(|| SettingsError::BadReply(format!("{instance_path} = {class_and_instance:?}")))?;
    let custom_name = text_of(&name_path)?;
    Ok(Loaded { device_instance, custom_name: Some(custom_name) })
}

/// Stores `name` as the battery's custom name (`SetValue` on the setting path).
pub async fn save_custom_name(conn: &Connection, uid: &str, name: &str) -> Result<(), SettingsError> {
    let path = custom_name_path(uid);
    let body = (zvariant::Value::from(name),);
    let call = conn.call_method(
        Some(SETTINGS_SERVICE),
        path.as_str(),
        Some(super::bus_item::BUS_ITEM),
        "SetValue",
        &body,
    );
    let reply = tokio::time::timeout(SETTINGS_TIMEOUT, call)
        .await
        .map_err(|_| SettingsError::Timeout)?
        .map_err(SettingsError::Call)?;
    let code: i32 = reply.body().deserialize().map_err(SettingsError::Call)?;
    if code == 0 {
        Ok(())
    } else {
        Err(SettingsError::BadReply(format!("SetValue returned {code}")))
    }
}

/// `error: cause: cause` on one line, for logs.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_and_instance() {
        assert_eq!(parse_class_and_instance("battery:3"), Some(3));
        assert_eq!(parse_class_and_instance("battery:512"), Some(512));
        assert_eq!(parse_class_and_instance("solarcharger:3"), None);
        assert_eq!(parse_class_and_instance("battery:"), None);
        assert_eq!(parse_class_and_instance("battery:-1"), None);
        assert_eq!(parse_class_and_instance("3"), None);
    }

    #[test]
    fn uid_is_safe_for_a_settings_path() {
        assert_eq!(settings_uid("jbd/ttyUSB0:2"), "bmsbridge_jbd_ttyUSB0_2");
        assert_eq!(settings_uid("_x"), "bmsbridge__x");
        assert_eq!(instance_path("bmsbridge_a"), "/Settings/Devices/bmsbridge_a/ClassAndVrmInstance");
    }
}
