//! An external current (and SoC) sensor for a battery: `current_source = "dbus:<service>"` in its
//! `[[port.battery]]`. Many users have a SmartShunt whose current is better than the BMS's. The
//! service's `/Dc/0/Current` (and `/Soc` for `soc_source`) is read on the same bus as ours every
//! poll interval; the battery's model step takes it instead of the BMS's value while it is fresh,
//! and falls back to the BMS's when the sensor is gone (said once each way).

use crate::battery::Battery;
use crate::victron::BusAddress;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Service kinds whose `/Dc/0/Current` is a current sensor.
const KINDS: [&str; 3] =
    ["com.victronenergy.battery.", "com.victronenergy.dcload.", "com.victronenergy.dcsource."];

/// The bus name of a `dbus:<service>` source, or why it is not one.
pub fn service_of(source: &str) -> Result<&str, String> {
    let name = source.strip_prefix("dbus:").ok_or_else(|| {
        format!("{source:?} is not \"dbus:<service>\" (dbus:com.victronenergy.battery.ttyS5)")
    })?;
    let kind_ok = KINDS.iter().any(|k| name.strip_prefix(k).is_some_and(|rest| !rest.is_empty()));
    let chars_ok =
        name.len() <= 255 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(kind_ok && chars_ok) {
        return Err(format!(
            "{name:?} is not a com.victronenergy.battery.*, .dcload.* or .dcsource.* service name"
        ));
    }
    Ok(name)
}

/// The sensor's latest values and when they were read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sensed {
    /// `/Dc/0/Current` (A, + = charging), if read.
    pub current_a: Option<f64>,
    /// `/Soc` (%), if read.
    pub soc_percent: Option<f64>,
    /// When.
    pub at: Instant,
}

/// What the model step needs: the sensor's channel and how old a value may be.
#[derive(Debug)]
pub struct External {
    sensed: watch::Receiver<Option<Sensed>>,
    fresh_for: Duration,
    label: String,
    in_use: bool,
}

impl External {
    /// Replaces the BMS's current (and SoC) in `battery` with the sensor's while it is fresh.
    pub fn apply(&mut self, battery: &mut Battery, now: Instant) {
        let sensed = *self.sensed.borrow();
        let fresh = sensed.filter(|s| now.saturating_duration_since(s.at) < self.fresh_for);
        let using = fresh.is_some_and(|s| s.current_a.is_some() || s.soc_percent.is_some());
        if using != self.in_use {
            self.in_use = using;
            if using {
                tracing::info!(battery = %self.label, "external sensor answering: its current/SoC is used");
            } else {
                tracing::warn!(battery = %self.label, "external sensor gone or stale: the BMS's current/SoC is used");
            }
        }
        if let Some(s) = fresh {
            if let Some(a) = s.current_a {
                battery.current_a = Some(a);
            }
            if let Some(soc) = s.soc_percent {
                battery.soc_percent = Some(soc);
            }
        }
    }
}

/// Reads one value; `None` when the path is invalid or the call fails.
async fn read(conn: &zbus::Connection, service: &str, path: &str) -> Option<f64> {
    let reply =
        conn.call_method(Some(service), path, Some(crate::victron::BUS_ITEM), "GetValue", &()).await.ok()?;
    let value: zbus::zvariant::OwnedValue = reply.body().deserialize().ok()?;
    f64::try_from(value.try_clone().ok()?)
        .ok()
        .or_else(|| i32::try_from(value).ok().map(f64::from))
        .filter(|v| v.is_finite())
}

/// Starts the sensor reader for a battery whose options name sources; `None` when none.
pub fn start(
    bus: &BusAddress,
    current_source: Option<&str>,
    soc_source: Option<&str>,
    every: Duration,
    label: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Option<External> {
    let current = current_source.and_then(|s| service_of(s).ok()).map(str::to_owned);
    let soc = soc_source.and_then(|s| service_of(s).ok()).map(str::to_owned);
    if current.is_none() && soc.is_none() {
        return None;
    }
    let (tx, rx) = watch::channel(None);
    let bus = bus.clone();
    tokio::spawn(async move {
        let mut conn: Option<zbus::Connection> = None;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => if *shutdown.borrow() { return },
            }
            if conn.is_none() {
                conn = match bus.builder() {
                    Ok(builder) => builder.build().await.ok(),
                    Err(_) => None,
                };
            }
            let Some(c) = &conn else { continue };
            let current_a = match &current {
                Some(service) => read(c, service, "/Dc/0/Current").await,
                None => None,
            };
            let soc_percent = match &soc {
                Some(service) => read(c, service, "/Soc").await,
                None => None,
            };
            // Nothing read: a stale value ages out (the sensor is gone, or our bus restarted).
            if current_a.is_some() || soc_percent.is_some() {
                tx.send_replace(Some(Sensed { current_a, soc_percent, at: Instant::now() }));
            } else if c.unique_name().is_none() {
                conn = None;
            }
        }
    });
    // Three poll intervals without a value, at least 3 s: the sensor counts as gone.
    let fresh_for = (every * 3).max(Duration::from_secs(3));
    Some(External { sensed: rx, fresh_for, label: label.to_owned(), in_use: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_name_a_current_sensor_service() {
        assert_eq!(service_of("dbus:com.victronenergy.battery.ttyS5"), Ok("com.victronenergy.battery.ttyS5"));
        assert!(service_of("dbus:com.victronenergy.dcload.shunt1").is_ok());
        for bad in [
            "com.victronenergy.battery.x",
            "dbus:com.victronenergy.solarcharger.x",
            "dbus:com.victronenergy.battery.",
            "dbus:com.victronenergy.battery.a b",
        ] {
            assert!(service_of(bad).is_err(), "{bad}");
        }
    }
}
