//! `[port.mqtt]` (an MQTT battery's connection options) and `[mqtt_publish]` (the JSON state
//! output and Home Assistant discovery). `docs/protocols/mqtt.md`, `docs/mqtt-output.md`.

use super::PortConfig;
use crate::transport::mqtt::{self as link, BrokerUrl, ClientSettings, TlsFiles};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The connection options shared by `[port.mqtt]` and `[mqtt_publish]`. Every key has a default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttClient {
    /// File whose first line is the broker password (the user is in the URL: `mqtt://user@host`).
    pub password_file: Option<PathBuf>,
    /// CA certificate(s), PEM, for `mqtts://`; unset: the system's CA store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, PEM (with `client_key`), for brokers that want one.
    pub client_cert: Option<PathBuf>,
    /// Client private key, PEM.
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate. Test setups only: anyone on the path can read and forge.
    pub insecure_skip_verify: bool,
    /// MQTT client id; unset: `bms-bridge-<pid>-<n>`. Two clients with one id throw each other off.
    pub client_id: Option<String>,
    /// QoS of the subscription or of the published state: 0 or 1 (unset: 0 in, 1 out).
    pub qos: Option<u8>,
}

/// `[mqtt_publish]`: every battery and bank as retained JSON, optionally with HA discovery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttPublish {
    /// The broker, `mqtt://[user@]host[:port]` or `mqtts://...` (no topic).
    pub url: String,
    /// Topic prefix: states go to `<prefix>/<identity>/state`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Publish Home Assistant discovery configs (`homeassistant/sensor/...`).
    #[serde(default = "default_true")]
    pub discovery: bool,
    /// Discovery prefix of Home Assistant.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Messages waiting for a slow broker; more are dropped and counted, polling never waits.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Connection options (TLS files, password file, client id, QoS).
    #[serde(default)]
    pub client: MqttClient,
}

fn default_prefix() -> String {
    "bms-bridge".to_owned()
}
fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_queue() -> usize {
    64
}

impl MqttClient {
    /// The transport's settings for `url` (reads the password file: the error names the file).
    pub fn settings(&self, url: &str) -> Result<ClientSettings, String> {
        let broker = BrokerUrl::parse(url)?;
        let password = self.password_file.as_deref().map(link::read_password_file).transpose()?;
        Ok(ClientSettings {
            broker,
            password,
            tls: TlsFiles {
                ca_file: self.ca_file.clone(),
                client_cert: self.client_cert.clone(),
                client_key: self.client_key.clone(),
                insecure_skip_verify: self.insecure_skip_verify,
            },
            client_id: self.client_id.clone(),
            keep_alive: Duration::from_secs(30),
        })
    }

    /// Problems of these options for `url`, as (key, message); files are checked to exist.
    pub fn problems(&self, url: &str, want_topic: bool) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let broker = match BrokerUrl::parse(url) {
            Ok(b) => b,
            Err(why) => {
                out.push(("url", why));
                return out;
            }
        };
        if want_topic && broker.topic.is_empty() {
            out.push(("url", "no topic: mqtt://host:1883/topic/of/this/battery".to_owned()));
        }
        if !want_topic && !broker.topic.is_empty() {
            out.push(("url", "the output has no topic in its URL: set prefix instead".to_owned()));
        }
        if let Some(q) = self.qos.filter(|q| *q > 1) {
            out.push(("qos", format!("{q} is not supported: 0 or 1")));
        }
        if let Some(path) = &self.password_file {
            if let Err(why) = link::read_password_file(path) {
                out.push(("password_file", why));
            } else if broker.user.is_none() {
                out.push(("password_file", "a password needs a user: mqtt://user@host/...".to_owned()));
            }
        }
        for (key, path) in
            [("ca_file", &self.ca_file), ("client_cert", &self.client_cert), ("client_key", &self.client_key)]
        {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                out.push((key, format!("{} does not exist or is not a file", path.display())));
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            out.push(("client_key", "client_cert and client_key go together".to_owned()));
        }
        let tls_keys = self.ca_file.is_some() || self.client_cert.is_some() || self.insecure_skip_verify;
        if tls_keys && !broker.tls {
            out.push(("ca_file", "TLS options on a plain mqtt:// URL: use mqtts://".to_owned()));
        }
        if self.client_id.as_deref().is_some_and(|id| id.trim().is_empty() || id.len() > 64) {
            out.push(("client_id", "must be 1..=64 characters".to_owned()));
        }
        out
    }
}

/// Problems of a port's `[port.mqtt]` (and of an MQTT port's other keys), as (key, message).
pub fn problems(port: &PortConfig) -> Vec<(&'static str, String)> {
    if !port.protocol.is_mqtt() {
        if port.mqtt != MqttClient::default() {
            return vec![("mqtt", format!("[port.mqtt] is for protocol mqtt, not {}", port.protocol.name()))];
        }
        return Vec::new();
    }
    let mut out: Vec<(&'static str, String)> = port
        .mqtt
        .problems(&port.device, true)
        .into_iter()
        .map(|(key, message)| (if key == "url" { "device" } else { key }, message))
        .collect();
    if port.baud.is_some() {
        out.push(("baud", "an MQTT port has no baud".to_owned()));
    }
    out
}

/// Problems of `[mqtt_publish]`, as (key, message).
pub fn publish_problems(publish: &MqttPublish) -> Vec<(&'static str, String)> {
    let mut out = publish.client.problems(&publish.url, false);
    let topic_safe =
        |s: &str| !s.is_empty() && !s.contains(['+', '#']) && !s.starts_with('/') && !s.ends_with('/');
    if !topic_safe(&publish.prefix) {
        out.push((
            "prefix",
            format!("{:?} is not a topic prefix (no wildcards, no leading or trailing /)", publish.prefix),
        ));
    }
    if !topic_safe(&publish.discovery_prefix) {
        out.push(("discovery_prefix", format!("{:?} is not a topic prefix", publish.discovery_prefix)));
    }
    if !(1..=10_000).contains(&publish.queue) {
        out.push(("queue", format!("{} is outside 1..=10000 messages", publish.queue)));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    /// The problems `parse` (which validates) reports, as check-config prints them.
    fn problems(text: &str) -> Vec<String> {
        parse(text, "m.toml").err().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn mqtt_keys_are_checked_at_their_line() {
        let text = "[[port]]\nprotocol = \"mqtt\"\ndevice = \"mqtt://u:secret@h/t\"\n";
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("m.toml:3:1: port[1].device: a password in the URL") && !p[0].contains("secret")
        );
        let text = "[[port]]\nprotocol = \"mqtt\"\ndevice = \"mqtt://h/t\"\n[port.mqtt]\nqos = 2\nca_file = \"/nonexistent.pem\"\n";
        let p = problems(text);
        assert!(p.iter().any(|l| l.starts_with("m.toml:5:1: port[1].mqtt.qos: 2 is not supported")), "{p:?}");
        assert!(
            p.iter()
                .any(|l| l.starts_with("m.toml:6:1: port[1].mqtt.ca_file: /nonexistent.pem does not exist")),
            "{p:?}"
        );
        assert!(p.iter().any(|l| l.contains("mqtts://")), "TLS option on plain mqtt: {p:?}");
        let text = "[[port]]\nprotocol = \"mqtt\"\ndevice = \"mqtt://h\"\n";
        assert!(problems(text)[0].contains("no topic"));
        let text = "[[port]]\nprotocol = \"jbd\"\ndevice = \"/dev/x\"\n[port.mqtt]\nqos = 1\n";
        assert!(problems(text)[0].contains("[port.mqtt] is for protocol mqtt"));
    }

    #[test]
    fn mqtt_publish_keys_are_checked_at_their_line() {
        let text = "[[port]]\nprotocol = \"mqtt\"\ndevice = \"mqtt://h/t\"\n[mqtt_publish]\nurl = \"mqtt://h/x\"\nprefix = \"a/#\"\nqueue = 0\n[mqtt_publish.client]\nclient_id = \"\"\n";
        let p = problems(text);
        assert!(
            p.iter().any(|l| l.starts_with("m.toml:5:1: mqtt_publish.url: the output has no topic")),
            "{p:?}"
        );
        assert!(p.iter().any(|l| l.starts_with("m.toml:6:1: mqtt_publish.prefix:")), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("m.toml:7:1: mqtt_publish.queue:")), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("m.toml:9:1: mqtt_publish.client.client_id:")), "{p:?}");
        let good =
            "[[port]]\nprotocol = \"mqtt\"\ndevice = \"mqtt://h/t\"\n[mqtt_publish]\nurl = \"mqtt://h\"\n";
        assert_eq!(problems(good), Vec::<String>::new());
    }
}
