//! A private `dbus-daemon` for tests and `bms-bridge demo`: nothing touches the machine's buses.
//!
//! The daemon gets its own config in a fresh temporary directory: a session-type bus on a unix
//! socket in that directory, allowing everything like Venus OS' `system.conf` (any user may own
//! any name and send anything; Venus' limits on match rules and replies). The address is read from
//! `--print-address`; the daemon's own messages go to `daemon.log` there. Dropping the [`PrivateBus`] kills and reaps the daemon and removes the
//! directory.

use super::BusAddress;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const DAEMON: &str = "dbus-daemon";

/// Why the private bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum PrivateBusError {
    /// No `dbus-daemon` on `PATH`.
    #[error("`{DAEMON}` not found: install it with `apt-get install -y dbus` (Debian/Ubuntu)")]
    NotInstalled,
    /// Creating the directory or config, or starting the daemon, failed.
    #[error("cannot start a private {DAEMON} in {dir}")]
    Io {
        /// The temporary directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited or printed no address.
    #[error("private {DAEMON} printed no address; its messages: {log}")]
    NoAddress {
        /// What the daemon wrote to stderr.
        log: String,
    },
}

/// A running private `dbus-daemon`.
#[derive(Debug)]
pub struct PrivateBus {
    dir: PathBuf,
    address: String,
    daemon: Option<(Child, ChildStdout)>,
}

impl PrivateBus {
    /// Starts a daemon in a new temporary directory.
    pub fn start() -> Result<Self, PrivateBusError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bms-bridge-dbus-{}-{n}", std::process::id()));
        let io = |source| PrivateBusError::Io { dir: dir.clone(), source };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        let socket = dir.join("bus.sock");
        std::fs::write(dir.join("bus.conf"), config(&socket)).map_err(io)?;
        let mut bus = Self { dir, address: String::new(), daemon: None };
        bus.spawn()?;
        Ok(bus)
    }

    /// The bus address, `unix:path=<dir>/bus.sock` (without the daemon's guid, so the same string
    /// reaches a restarted daemon).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// [`BusAddress::Address`] of this bus.
    pub fn bus_address(&self) -> BusAddress {
        BusAddress::Address(self.address.clone())
    }

    /// Kills and reaps the daemon; every connection to it breaks. [`Self::restart`] brings it back.
    pub fn stop(&mut self) {
        if let Some((mut child, _stdout)) = self.daemon.take() {
            // Already exited is fine: we only need it gone.
            if let Err(error) = child.kill() {
                tracing::debug!(%error, "private dbus-daemon already gone");
            }
            if let Err(error) = child.wait() {
                tracing::warn!(%error, "cannot reap the private dbus-daemon");
            }
        }
    }

    /// Stops the daemon (if running) and starts a new one at the same address, like a D-Bus
    /// restart on a GX.
    pub fn restart(&mut self) -> Result<(), PrivateBusError> {
        self.stop();
        let socket = self.dir.join("bus.sock");
        if socket.exists() {
            std::fs::remove_file(&socket)
                .map_err(|source| PrivateBusError::Io { dir: self.dir.clone(), source })?;
        }
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), PrivateBusError> {
        let config = self.dir.join("bus.conf");
        let log_path = self.dir.join("daemon.log");
        // The daemon's messages go to a file, not the terminal: as root in a container it always
        // complains that it cannot raise its fd limit, which is harmless.
        let log = std::fs::File::create(&log_path)
            .map_err(|source| PrivateBusError::Io { dir: self.dir.clone(), source })?;
        let no_address = || PrivateBusError::NoAddress {
            log: std::fs::read_to_string(&log_path).unwrap_or_default().trim().to_owned(),
        };
        let mut child = Command::new(DAEMON)
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => PrivateBusError::NotInstalled,
                _ => PrivateBusError::Io { dir: self.dir.clone(), source },
            })?;
        let Some(stdout) = child.stdout.take() else {
            reap(&mut child);
            return Err(no_address());
        };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        let address = line.trim();
        if read.is_err() || address.is_empty() {
            reap(&mut child);
            return Err(no_address());
        }
        // Keep only the transport part: `unix:path=...,guid=...` → `unix:path=...`.
        self.address =
            address.split(',').filter(|part| !part.starts_with("guid=")).collect::<Vec<_>>().join(",");
        // The pipe stays open for the daemon's lifetime so it never writes into a closed pipe.
        self.daemon = Some((child, reader.into_inner()));
        Ok(())
    }
}

fn reap(child: &mut Child) {
    // Best effort: the daemon failed to start and may already have exited.
    if child.kill().is_err() {
        tracing::debug!("private dbus-daemon had already exited");
    }
    if let Err(error) = child.wait() {
        tracing::warn!(%error, "cannot reap the private dbus-daemon");
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        self.stop();
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(%error, dir = %self.dir.display(), "cannot remove private bus directory");
        }
    }
}

/// Session-type bus, everything allowed (Venus `system.conf`: `<allow own="*"/>`, send anything).
fn config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
  </policy>
  <limit name="max_match_rules_per_connection">1024</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
"#,
        socket.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_daemon_says_how_to_install_it() {
        let text = PrivateBusError::NotInstalled.to_string();
        assert!(text.contains("apt-get install -y dbus"), "{text}");
    }

    #[test]
    fn config_listens_in_its_directory_and_allows_everything() {
        let text = config(Path::new("/tmp/x/bus.sock"));
        assert!(text.contains("<listen>unix:path=/tmp/x/bus.sock</listen>"));
        assert!(text.contains(r#"<allow own="*"/>"#));
        assert!(text.contains("<type>session</type>"));
    }
}
