//! A private mosquitto for the MQTT tests: a free port, a generated config (plain, password
//! file, TLS with a CA made at test time), restartable on the same port.
#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where mosquitto is installed on Debian (not on root's PATH everywhere).
pub fn mosquitto_bin() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].iter().map(PathBuf::from).find(|p| p.is_file())
}

/// A TCP port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The TLS files of a broker: CA, server certificate and key; and a client certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A CA and a server certificate for 127.0.0.1/localhost, made now (rcgen), written to `dir`.
pub fn make_tls(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "bms-bridge test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let server = params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.distinguished_name.push(DnType::CommonName, "bms-bridge test client");
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.server_cert, server.pem()).unwrap();
    std::fs::write(&files.server_key, server_key.serialize_pem()).unwrap();
    std::fs::write(&files.client_cert, client.pem()).unwrap();
    std::fs::write(&files.client_key, client_key.serialize_pem()).unwrap();
    files
}

/// How the broker admits clients.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anyone.
    Anonymous,
    /// User and password (a password file made with mosquitto_passwd).
    Password(String, String),
}

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// A broker on a free port, or `None` when mosquitto is not installed (the caller skips,
    /// saying so).
    pub fn start(dir: &Path, auth: Auth, tls: Option<&TlsFiles>) -> Option<Broker> {
        let bin = mosquitto_bin()?;
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut conf = format!("per_listener_settings false\nlistener {port} 127.0.0.1\npersistence false\nlog_dest stderr\nlog_type all\nsys_interval 1\n");
        match &auth {
            Auth::Anonymous => conf.push_str("allow_anonymous true\n"),
            Auth::Password(user, password) => {
                let file = dir.join("passwd");
                let made = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, password])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(made, "mosquitto_passwd failed");
                conf.push_str(&format!("allow_anonymous false\npassword_file {}\n", file.display()));
            }
        }
        if let Some(tls) = tls {
            conf.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                tls.ca.display(),
                tls.server_cert.display(),
                tls.server_key.display()
            ));
        }
        let config = dir.join("mosquitto.conf");
        std::fs::write(&config, conf).unwrap();
        let _ = bin;
        let mut broker = Broker { port, dir: dir.to_path_buf(), config, child: None };
        broker.run();
        Some(broker)
    }

    /// Starts the process (again) on the same port and waits until it accepts connections.
    pub fn run(&mut self) {
        let bin = mosquitto_bin().unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child =
            Command::new(bin).arg("-c").arg(&self.config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (the port is free until [`Broker::run`]).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    pub fn url(&self, topic: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{topic}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test client: publishes, and collects what it subscribed to.
pub struct Client {
    pub client: AsyncClient,
    pub received: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    pub async fn connect(port: u16, id: &str) -> Client {
        Self::connect_with(MqttOptions::new(id, "127.0.0.1", port)).await
    }

    pub async fn connect_with(mut options: MqttOptions) -> Client {
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        let (up_tx, up_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut up = Some(up_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(up) = up.take() {
                            let _ = up.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), up_rx).await.expect("test client connects").unwrap();
        Client { client, received, task }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload.into()).await.unwrap();
    }

    /// Subscribes and waits for the SUBACK to be likely processed.
    pub async fn subscribe(&self, topic: &str) {
        self.client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// The next message on a topic matching `pred`, within `limit`.
    pub async fn next_where(
        &mut self,
        limit: Duration,
        pred: impl Fn(&str, &[u8]) -> bool,
    ) -> Option<(String, Vec<u8>, bool)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.received.recv()).await {
                Ok(Some(m)) if pred(&m.0, &m.1) => return Some(m),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
