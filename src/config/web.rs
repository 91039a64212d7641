//! `[web]`: the read-only status page (`docs/web.md`).

use serde::Deserialize;
use std::net::SocketAddr;

/// `[web]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// `host:port` the page is served on; unset: `0.0.0.0:8088` on Venus OS (the GX's LAN),
    /// `127.0.0.1:8088` elsewhere; `""`: no page.
    pub listen: Option<String>,
}

/// The default address: a GX has no screen of its own for this, so its page is on the LAN; a
/// plain Linux host keeps it local until the user says otherwise.
pub fn default_listen(venus_os: bool) -> &'static str {
    if venus_os {
        "0.0.0.0:8088"
    } else {
        "127.0.0.1:8088"
    }
}

impl WebConfig {
    /// The address to listen on, `None` when the page is off (`listen = ""`) or the value does
    /// not parse (validation reports that).
    pub fn address(&self, venus_os: bool) -> Option<SocketAddr> {
        let text = self.listen.as_deref().unwrap_or(default_listen(venus_os)).trim();
        if text.is_empty() {
            return None;
        }
        text.parse().ok()
    }
}

/// Problems of `[web]`: (key, message).
pub fn problems(web: &WebConfig) -> Vec<(&'static str, String)> {
    match web.listen.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() && text.parse::<SocketAddr>().is_err() => vec![(
            "listen",
            format!("\"{text}\" is not an address: use ip:port (\"127.0.0.1:8088\", \"[::]:8088\"), or \"\" for no page"),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_empty_and_bad_addresses() {
        let unset = WebConfig::default();
        assert_eq!(unset.address(true), "0.0.0.0:8088".parse().ok());
        assert_eq!(unset.address(false), "127.0.0.1:8088".parse().ok());
        let off = WebConfig { listen: Some(String::new()) };
        assert_eq!(off.address(true), None);
        assert!(problems(&off).is_empty());
        let bad = WebConfig { listen: Some("localhost".into()) };
        assert_eq!(problems(&bad).len(), 1);
        assert!(problems(&WebConfig { listen: Some("[::1]:9000".into()) }).is_empty());
    }
}
