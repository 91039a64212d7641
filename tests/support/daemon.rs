//! The real `bms-bridge` binary against a private dbus-daemon and a simulator on a pty: start,
//! read the service's items, wait for conditions. Used by the end-to-end tests.
#![allow(dead_code)]

use bms_bridge::config::Protocol;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zbus::zvariant::OwnedValue;

pub const SERVICE: &str = "com.victronenergy.battery.ttyBMS0";
pub type Items = HashMap<String, HashMap<String, OwnedValue>>;

/// Kills the daemon when the test ends, however it ends.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bms-bridge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn link_pty(link: &Path, target: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

pub fn start_daemon(dir: &Path, bus: &str, device: &Path) -> Daemon {
    start_daemon_for(dir, bus, device, Protocol::Jbd, &[])
}

/// Starts the daemon on one port of `protocol`; `addresses` empty: the protocol's default.
pub fn start_daemon_for(
    dir: &Path,
    bus: &str,
    device: &Path,
    protocol: Protocol,
    addresses: &[u8],
) -> Daemon {
    start_daemon_with(dir, bus, device, protocol, addresses, "")
}

/// [`start_daemon_for`] with `extra` TOML appended after the port (e.g. a `[[port.battery]]`).
pub fn start_daemon_with(
    dir: &Path,
    bus: &str,
    device: &Path,
    protocol: Protocol,
    addresses: &[u8],
    extra: &str,
) -> Daemon {
    let config = dir.join("bms-bridge.toml");
    let addresses = if addresses.is_empty() { String::new() } else { format!("addresses = {addresses:?}\n") };
    std::fs::write(
        &config,
        format!(
            "[daemon]\npoll_interval_ms = 250\nstale_after_s = 2.0\nstate_dir = \"{}\"\n\n[dbus]\nbus = \"{bus}\"\ndevice_instance = 7\n\n[[port]]\ndevice = \"{}\"\nprotocol = \"{}\"\ntimeout_ms = 200\n{addresses}{extra}",
            dir.join("state").display(),
            device.display(),
            protocol.name(),
        ),
    )
    .unwrap();
    spawn_daemon(dir, &config)
}

/// Starts the daemon on the config file `config`; its log goes to `dir/daemon.log`.
pub fn spawn_daemon(dir: &Path, config: &Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(["--log-level", "debug", "run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    Daemon(child)
}

/// The daemon's log so far.
pub fn daemon_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

pub async fn get_items(conn: &zbus::Connection) -> zbus::Result<Items> {
    let reply =
        conn.call_method(Some(SERVICE), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await?;
    reply.body().deserialize::<Items>()
}

pub fn value<'a>(items: &'a Items, path: &str) -> &'a OwnedValue {
    items.get(path).and_then(|i| i.get("Value")).unwrap_or_else(|| panic!("{path} missing from GetItems"))
}

pub fn is_invalid(v: &OwnedValue) -> bool {
    v.value_signature().to_string() == "ai"
        && Vec::<i32>::try_from(v.clone()).map(|a| a.is_empty()).unwrap_or(false)
}

pub fn f64_of(v: &OwnedValue) -> Option<f64> {
    f64::try_from(v.clone()).ok()
}

pub fn i32_of(v: &OwnedValue) -> Option<i32> {
    i32::try_from(v.clone()).ok()
}

/// Polls GetItems until `check` holds, or fails after `limit` with the last items.
pub async fn wait_for(
    conn: &zbus::Connection,
    limit: Duration,
    what: &str,
    check: impl Fn(&Items) -> bool,
) -> Items {
    wait_for_service(conn, SERVICE, limit, what, check).await
}

pub fn connected(items: &Items) -> bool {
    items.get("/Connected").and_then(|i| i.get("Value")).and_then(i32_of) == Some(1)
}

/// Starts the daemon with a config file of `text` (written to `dir`).
pub fn start_daemon_with_config(dir: &Path, text: &str) -> Daemon {
    let config = dir.join("bms-bridge.toml");
    std::fs::write(&config, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(["--log-level", "debug", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    Daemon(child)
}

/// GetItems of the service `name`.
pub async fn get_items_of(conn: &zbus::Connection, name: &str) -> zbus::Result<Items> {
    let reply = conn.call_method(Some(name), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await?;
    reply.body().deserialize::<Items>()
}

/// Polls GetItems of `name` until `check` holds, or fails after `limit` naming `what`.
pub async fn wait_for_service(
    conn: &zbus::Connection,
    name: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&Items) -> bool,
) -> Items {
    let start = Instant::now();
    loop {
        let items = get_items_of(conn, name).await;
        if let Ok(items) = &items {
            if check(items) {
                return items.clone();
            }
        }
        if start.elapsed() > limit {
            match items {
                Ok(items) => {
                    let mut shown: Vec<String> = items
                        .iter()
                        .filter(|(p, _)| {
                            p.starts_with("/Info/Max")
                                || p.starts_with("/System/NrOf")
                                || p.starts_with("/Dc/0/Cu")
                                || p.as_str() == "/Connected"
                        })
                        .map(|(p, v)| format!("{p}={:?}", v.get("Value")))
                        .collect();
                    shown.sort();
                    panic!("{name}: timed out waiting for {what}; {shown:?}")
                }
                Err(err) => panic!("{name}: timed out waiting for {what}; {err}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The number at `path`, if valid.
pub fn number(items: &Items, path: &str) -> Option<f64> {
    let v = items.get(path)?.get("Value")?;
    f64_of(v).or_else(|| i32_of(v).map(f64::from))
}
