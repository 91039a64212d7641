//! `[web]`: a read-only status page served by the daemon (`docs/web.md`).
//!
//! Data flows one way: the battery and bank tasks offer each published state to
//! [`crate::mqtt_output::Publisher`], which hands it to the [`Board`] here; the HTTP side only
//! reads the board. The board keeps the published [`Output`] and renders the MQTT output's state
//! document (`state_doc::state_json`) when a page asks for it, not on every reading: building
//! the JSON tree was most of what a reading cost the board (docs/performance.md, "Per
//! reading"). Nothing on the page can write anything, and a slow or hostile client never holds
//! up a task (the board's lock is held only to copy).
//!
//! - [`http`]: the GET-only HTTP/1.1 server and its limits;
//! - [`history`]: the 24 h ring;
//! - [`api`]: routes, `/api/state` (JSON) and `/api/history` (CSV);
//! - `assets/`: the page, its script and style, compiled in (no files are served from disk).

pub mod api;
pub mod history;
pub mod http;

use crate::monitor::{Monitor, Output};
use crate::victron::Identity;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Batteries and banks the board keeps at most (each with its history ring: docs/web.md).
pub const MAX_ENTRIES: usize = 64;

/// What a battery task knows beside the published state: shown on the page only.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// "battery", "bank" or "pack".
    pub kind: &'static str,
    /// The port's health.
    pub link: Option<Link>,
    /// The configured cell window (min, max V): cells near either end are highlighted.
    pub cell_window_v: Option<(f64, f64)>,
    /// A bank's packs.
    pub packs: Vec<PackShare>,
}

/// Connection state of one battery's port.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    /// Seconds since the last good reply.
    pub last_good_age_s: Option<f64>,
    /// Failed or rejected polls in the last hour.
    pub errors_last_hour: u32,
    /// The last error, while the last poll failed.
    pub last_error: Option<String>,
}

impl Link {
    /// The link state of `monitor` at `now`.
    pub fn of(monitor: &Monitor, now: Instant) -> Self {
        Self {
            last_good_age_s: monitor.last_good().map(|t| now.saturating_duration_since(t).as_secs_f64()),
            errors_last_hour: monitor.errors_in_last_hour(now),
            last_error: monitor.last_error().map(str::to_owned),
        }
    }
}

/// One pack of a bank: its current against its rating.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackShare {
    /// The pack's label (port and address).
    pub name: String,
    /// In the bank now.
    pub member: bool,
    /// The pack's current (A), while online.
    pub current_a: Option<f64>,
    /// Its rated charge and discharge currents (A), where configured.
    pub charge_rating_a: Option<f64>,
    /// As above, discharge.
    pub discharge_rating_a: Option<f64>,
}

#[derive(Debug)]
struct Entry {
    id: String,
    name: String,
    connection: String,
    /// The state as published, rendered on request ([`Entry::state_json`]).
    out: Output,
    /// Unix time when `out` was offered.
    offered_unix: f64,
    extra: Extra,
    /// When `out` was offered.
    updated: Instant,
    history: history::Ring,
}

impl Entry {
    /// The MQTT output's state document of `out`, as it was when offered.
    fn state_json(&self) -> Value {
        crate::state_doc::state_json_at(&self.out, self.offered_unix, self.updated)
    }

    /// What the control decided, beside the state document.
    fn control_json(&self) -> Value {
        let out = &self.out;
        let l = &out.limits;
        json!({
            "state": out.state,
            "error_code": out.error_code,
            "low_voltage": l.low_voltage_v,
            "soc_published": l.soc_percent,
            "soc_bms": l.soc_bms_percent,
            "time_to_go_s": l.time_to_go_s,
            "current_average": l.current_average_a,
            "since_full_charge_s": l.since_full_charge_s,
        })
    }
}

/// What the page shows: the latest state of every battery and bank, and their history.
#[derive(Debug, Clone, Default)]
pub struct Board {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Board {
    /// Takes a published state, offered at `unix_now`.
    pub fn update(&self, identity: &Identity, out: &Output, extra: Extra, unix_now: f64) {
        let name = if identity.custom_name.is_empty() {
            identity.product_name.clone()
        } else {
            identity.custom_name.clone()
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match entries.iter().position(|e| e.id == identity.unique_id) {
            Some(i) => i,
            None if entries.len() < MAX_ENTRIES => {
                entries.push(Entry {
                    id: identity.unique_id.clone(),
                    name: String::new(),
                    connection: String::new(),
                    out: out.clone(),
                    offered_unix: unix_now,
                    extra: Extra::default(),
                    updated: Instant::now(),
                    history: history::Ring::default(),
                });
                entries.len() - 1
            }
            None => return,
        };
        let Some(entry) = entries.get_mut(index) else { return };
        entry.name = name;
        entry.connection.clone_from(&identity.connection);
        entry.out.clone_from(out);
        entry.offered_unix = unix_now;
        entry.extra = extra;
        entry.updated = Instant::now();
        entry.history.record_values(unix_now as u32, history::values_of(out));
    }

    /// How many batteries and banks are on the board.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Nothing on the board yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the server needs besides the board.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `[daemon] poll_interval_ms`: the page refreshes this often.
    pub poll_interval: Duration,
    /// `[daemon] stale_after_s`: an entry not updated for this long is shown stale.
    pub stale_after: Duration,
}

/// Binds the page's address; the returned task serves it until `shutdown`.
pub async fn start(
    settings: Settings,
    board: Board,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static)> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let bound = listener.local_addr()?;
    let routes = api::Routes::new(board, settings.poll_interval, settings.stale_after);
    Ok((bound, http::serve(listener, move |request| routes.answer(request), shutdown)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::Battery;
    use crate::mqtt_output::{state_json, Publisher};

    fn identity(id: &str) -> Identity {
        Identity {
            service_suffix: "x".into(),
            unique_id: id.into(),
            product_name: "JBD (bms-bridge)".into(),
            connection: "Serial /dev/x".into(),
            custom_name: String::new(),
            firmware_version: String::new(),
            hardware_version: String::new(),
            serial: id.into(),
            fallback_device_instance: 1,
            max_cells: 4,
            manufacturer: "JBD".into(),
            connection_information: "JBD (jbd) on /dev/x".into(),
        }
    }

    fn output() -> Output {
        let mut out = Output::online(Battery {
            voltage_v: Some(13.2),
            current_a: Some(-3.0),
            soc_percent: Some(55.0),
            cell_voltages_v: Some(vec![3.30, 3.31, 3.29, 3.30]),
            ..Default::default()
        });
        out.limits.charge_voltage_v = Some(13.8);
        out.limits.charge_limitation = "Config max".into();
        out
    }

    /// `/api/state` carries the MQTT output's document itself, not a second rendering of it.
    #[test]
    fn the_page_state_is_the_mqtt_document() {
        let board = Board::default();
        let publisher = Publisher::disabled().with_web(board.clone());
        let out = output();
        publisher.offer(&identity("a"), &out);
        let routes = api::Routes::new(board.clone(), Duration::from_secs(1), Duration::from_secs(10));
        let page = routes.state(0.0);
        let mut shown = page["batteries"][0]["state"].clone();
        let mut mqtt = state_json(&out, 0.0);
        for doc in [&mut shown, &mut mqtt] {
            doc.as_object_mut().unwrap().remove("timestamp");
        }
        assert_eq!(shown, mqtt);
        assert_eq!(page["batteries"][0]["stale"], false);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let csv = routes.history_csv(now + 1.0, 24);
        let row = csv.lines().nth(1).unwrap();
        assert!(row.ends_with(",a,13.2,-3,55,3.29,3.31,13.8,,"), "{row}");
    }

    #[test]
    fn the_board_is_bounded() {
        let board = Board::default();
        let publisher = Publisher::disabled().with_web(board.clone());
        for i in 0..MAX_ENTRIES + 10 {
            publisher.offer(&identity(&format!("b{i}")), &output());
        }
        assert_eq!(board.len(), MAX_ENTRIES);
    }
}
