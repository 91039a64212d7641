//! MQTT broker connections (rumqttc): one connection per broker and credentials, shared by every
//! battery subscribed on it; reconnected with backoff forever, never an exit.
//!
//! Credentials never reach a log line: a URL carries at most the user name (a password in it is
//! refused, it belongs in `password_file`), [`BrokerUrl`]'s `Display` shows no secret, and the
//! password itself lives only in [`ClientSettings::password`], whose `Debug` is redacted.

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The default port of `mqtt://`.
pub const PLAIN_PORT: u16 = 1883;
/// The default port of `mqtts://`.
pub const TLS_PORT: u16 = 8883;
/// First wait after a failed connection; doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Messages queued per subscription before newer ones are dropped (a reading is a whole
/// document: the driver only needs the latest few).
const SUBSCRIPTION_QUEUE: usize = 16;
/// Requests (publishes, subscribes) rumqttc queues towards the broker.
pub const REQUEST_QUEUE: usize = 256;

/// `mqtt://[user@]host[:port][/topic/path]` or `mqtts://...`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerUrl {
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// User name, if any (the password comes from `password_file`).
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The topic after the first `/` (empty when the URL names none).
    pub topic: String,
}

impl BrokerUrl {
    /// Parses a URL; the error says what is wrong (never echoing a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err("must start with mqtt:// or mqtts:// (mqtt://host:1883/topic/path)".into());
        };
        let (authority, topic) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, host)) => {
                if user.contains(':') {
                    return Err("a password in the URL is not accepted (it would end up in logs and \
                                `ps`): put it in a file named by password_file"
                        .into());
                }
                if user.is_empty() {
                    return Err("empty user name before '@'".into());
                }
                (Some(user.to_owned()), host)
            }
            None => (None, authority),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port: u16 =
                    port.parse().map_err(|_| format!("port {port:?} is not a number 1..=65535"))?;
                if port == 0 {
                    return Err("port 0 is not a broker port".into());
                }
                (host, port)
            }
            _ => (host_port, if tls { TLS_PORT } else { PLAIN_PORT }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("no broker host (mqtt://host:1883/topic)".into());
        }
        if topic.contains(['+', '#']) {
            return Err(format!("topic {topic:?} has a wildcard: name one battery's topic exactly"));
        }
        Ok(Self { tls, user, host: host.to_owned(), port, topic: topic.to_owned() })
    }

    /// The broker part, for messages: `mqtt://user@host:port` (no password: there is none).
    pub fn broker(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = self.user.as_ref().map_or(String::new(), |u| format!("{u}@"));
        format!("{scheme}://{user}{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.broker(), self.topic)
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS files and choices of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// CA certificate(s), PEM; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, PEM (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// Client private key, PEM.
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate (test setups only; said loudly at start).
    pub insecure_skip_verify: bool,
}

/// Everything one connection needs besides the topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    /// The broker.
    pub broker: BrokerUrl,
    /// The password (from `password_file`).
    pub password: Option<Secret>,
    /// TLS files and choices (used with `mqtts://`).
    pub tls: TlsFiles,
    /// Client id; `None`: `bms-bridge-<pid>-<n>`.
    pub client_id: Option<String>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

impl ClientSettings {
    /// The key connections are shared by: everything but the topic.
    fn key(&self) -> ClientSettings {
        let mut key = self.clone();
        key.broker.topic.clear();
        key
    }
}

/// Reads the password file: its first line, trimmed (the error names the file, not its content).
pub fn read_password_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().trim_end_matches('\r').to_owned();
    if line.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(line))
}

/// The rustls configuration for `tls` (ring provider; no aws-lc-rs in this build).
pub fn rustls_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if tls.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("ca_file {}: no PEM certificate in it", path.display()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("no system CA certificates found: set ca_file".into());
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("client_cert {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("client_key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("client_cert and client_key go together".into()),
    }
}

/// `insecure_skip_verify`: any server certificate is accepted; signatures are still checked so
/// that the handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rumqttc options of `settings` (TLS files read now: an error names the file).
pub fn mqtt_options(settings: &ClientSettings, client_id: String) -> Result<MqttOptions, String> {
    let b = &settings.broker;
    let mut options = MqttOptions::new(client_id, b.host.clone(), b.port);
    options.set_keep_alive(settings.keep_alive.max(Duration::from_secs(5)));
    options.set_clean_session(true);
    options.set_request_channel_capacity(REQUEST_QUEUE);
    // Documents of up to 48 cells with history fit in a few kB; HA configs too.
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    if let (Some(user), password) = (&b.user, &settings.password) {
        options.set_credentials(user.clone(), password.as_ref().map_or(String::new(), |p| p.0.clone()));
    }
    if b.tls {
        let config = rustls_config(&settings.tls)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
    }
    Ok(options)
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// Whether the broker kept it (retained): it may be from long ago.
    pub retained: bool,
}

/// The state of one connection, for the drivers and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet.
    Connecting,
    /// Connected (CONNACK received).
    Up,
    /// The last attempt failed (why; no secret in it).
    Down(String),
}

type Subscriptions = Arc<Mutex<Vec<(String, QoS, mpsc::Sender<Incoming>)>>>;

/// One shared connection.
#[derive(Debug, Clone)]
pub struct Connection {
    client: AsyncClient,
    subscriptions: Subscriptions,
    state: watch::Receiver<LinkState>,
    /// Messages dropped because a subscriber's queue was full.
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Connection {
    /// Opens a connection (its task runs until `shutdown`), with an optional last will.
    pub fn open(
        settings: &ClientSettings,
        last_will: Option<LastWill>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Connection, String> {
        let id = settings.client_id.clone().unwrap_or_else(next_client_id);
        let mut options = mqtt_options(settings, id)?;
        if let Some(will) = last_will {
            options.set_last_will(will);
        }
        let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
        let subscriptions: Subscriptions = Arc::default();
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(run(
            eventloop,
            client.clone(),
            subscriptions.clone(),
            state_tx,
            settings.broker.broker(),
            dropped.clone(),
            shutdown,
        ));
        Ok(Connection { client, subscriptions, state, dropped })
    }

    /// Subscribes to `topic`; messages arrive on the receiver, across reconnections.
    pub fn subscribe(&self, topic: &str, qos: QoS) -> mpsc::Receiver<Incoming> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.push((topic.to_owned(), qos, tx));
        }
        // Connected already: subscribe now (else the CONNACK handler does it).
        if *self.state.borrow() == LinkState::Up {
            let _ = self.client.try_subscribe(topic, qos);
        }
        rx
    }

    /// The client, for publishing (`try_publish` never waits: a full queue is an error).
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// The link state now and its changes.
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Messages dropped so far because a subscriber was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn next_client_id() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("bms-bridge-{}-{n}", std::process::id())
}

/// Drives one connection until `shutdown`: events in, reconnection with backoff on failure.
async fn run(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Subscriptions,
    state: watch::Sender<LinkState>,
    broker: String,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = stopped(&mut shutdown) => {
                let _ = client.try_disconnect();
                // Let the DISCONNECT go out (else the broker sends the last will).
                let _ = tokio::time::timeout(Duration::from_millis(300), eventloop.poll()).await;
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if failures > 0 {
                    tracing::info!(broker = %broker, "MQTT broker connected again");
                } else {
                    tracing::info!(broker = %broker, "MQTT broker connected");
                }
                failures = 0;
                backoff = BACKOFF_MIN;
                // A clean session forgets subscriptions: make them again on every connection.
                let topics: Vec<(String, QoS)> = subscriptions
                    .lock()
                    .map(|subs| subs.iter().map(|(t, q, _)| (t.clone(), *q)).collect())
                    .unwrap_or_default();
                for (topic, qos) in topics {
                    let _ = client.try_subscribe(topic, qos);
                }
                state.send_replace(LinkState::Up);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let incoming = Incoming {
                    topic: publish.topic.clone(),
                    payload: publish.payload.to_vec(),
                    at: Instant::now(),
                    retained: publish.retain,
                };
                if let Ok(mut subs) = subscriptions.lock() {
                    subs.retain(|(_, _, tx)| !tx.is_closed());
                    for (_, _, tx) in subs.iter().filter(|(t, _, _)| *t == incoming.topic) {
                        if tx.try_send(incoming.clone()).is_err() {
                            dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(err) => {
                // rumqttc's errors name the host and the cause, never the password.
                let why = err.to_string();
                if failures == 0 || failures.is_power_of_two() {
                    tracing::warn!(broker = %broker, error = %why, retry_in_ms = backoff.as_millis() as u64, attempts = failures + 1, "MQTT broker unreachable; retrying with backoff (logged at attempts 1, 2, 4, 8 ...)");
                }
                failures = failures.saturating_add(1);
                state.send_replace(LinkState::Down(why));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Returns once `shutdown` turns true (the guard is not held across an await: the future stays
/// `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// The connections of a daemon, shared by broker and credentials.
#[derive(Debug)]
pub struct Hub {
    connections: Mutex<HashMap<ClientSettings, Connection>>,
    shutdown: watch::Receiver<bool>,
}

impl Hub {
    /// An empty hub whose connections end at `shutdown`.
    pub fn new(shutdown: watch::Receiver<bool>) -> Self {
        Self { connections: Mutex::default(), shutdown }
    }

    /// The connection for `settings` (opened on first use; the topic does not matter).
    pub fn connection(&self, settings: &ClientSettings) -> Result<Connection, String> {
        let key = settings.key();
        let mut map = self.connections.lock().map_err(|_| "MQTT hub poisoned".to_owned())?;
        if let Some(conn) = map.get(&key) {
            return Ok(conn.clone());
        }
        let conn = Connection::open(&key, None, self.shutdown.clone())?;
        map.insert(key, conn.clone());
        Ok(conn)
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.connections.lock().map_or(0, |m| m.len())
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// QoS 0 or 1 from the config's number (validated to 0..=1).
pub fn qos(level: u8) -> QoS {
    if level >= 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    }
}

/// The name of an MQTT battery's port for its service name: the topic, `/` as `_`.
pub fn port_name(device: &str) -> Option<String> {
    BrokerUrl::parse(device).ok().map(|u| u.topic.replace('/', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_refuse_passwords() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884/batteries/1").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.topic.as_str()),
            (false, "127.0.0.1", 1884, "batteries/1")
        );
        let u = BrokerUrl::parse("mqtts://bms@broker.lan/a/b/c").unwrap();
        assert_eq!((u.tls, u.user.as_deref(), u.port, u.topic.as_str()), (true, Some("bms"), 8883, "a/b/c"));
        assert_eq!(u.to_string(), "mqtts://bms@broker.lan:8883/a/b/c");
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap().port, 1883);
        let e = BrokerUrl::parse("mqtt://bms:hunter2@h/t").unwrap_err();
        assert!(e.contains("password_file") && !e.contains("hunter2"), "{e}");
        assert!(BrokerUrl::parse("http://h/t").is_err());
        assert!(BrokerUrl::parse("mqtt://h:99999/t").is_err());
        assert!(BrokerUrl::parse("mqtt:///t").is_err());
        assert!(BrokerUrl::parse("mqtt://h/bat/+").is_err());
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1900/t").unwrap().host, "::1");
    }

    #[test]
    fn secrets_never_print() {
        let s = ClientSettings {
            broker: BrokerUrl::parse("mqtt://u@h/t").unwrap(),
            password: Some(Secret::new("hunter2".into())),
            tls: TlsFiles::default(),
            client_id: None,
            keep_alive: Duration::from_secs(30),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
