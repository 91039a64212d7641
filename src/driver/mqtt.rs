//! The MQTT listener: each message on a battery's topic is decoded on its own (no merging with
//! older messages) and handed to the battery's `watch` channel like a serial poll result, so
//! monitor, control and D-Bus are the same for every BMS. Silence is handled there: no good
//! reading for `stale_after_s` is the BMS-lost policy (CCL 0).
//!
//! A bad message is one rate-limited log line with topic, field and reason, and nothing else: the
//! reading in force stays what it was, ageing towards the lost state.

use super::{publish, Subscriber};
use crate::bms::mqtt;
use crate::transport::mqtt::Incoming;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// How often a battery's bad messages are logged (each first kind of problem at once).
pub const BAD_MESSAGE_LOG_EVERY: Duration = Duration::from_secs(60);

/// What one MQTT battery needs besides its messages.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// The battery's topic with its broker, for messages (no secret in it).
    pub source: String,
    /// A message whose `timestamp` is older than this is stale.
    pub stale_after: Duration,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A reading, stamped with the time its values are from.
    Reading(Box<crate::battery::Battery>),
    /// Rejected: why (field and reason, or stale).
    Rejected(String),
}

/// Judges one message received at `at` when the wall clock says `unix_now` seconds.
pub fn judge(message: &Incoming, unix_now: f64, settings: &MqttSettings) -> Verdict {
    let decoded = match mqtt::decode(&message.payload) {
        Ok(m) => m,
        Err(err) => return Verdict::Rejected(err.to_string()),
    };
    let mut battery = decoded.battery;
    let mut read_at = message.at;
    if let Some(timestamp) = decoded.timestamp_s {
        // A publisher clock a little ahead of ours is age 0, not a reading from the future.
        let age = (unix_now - timestamp).max(0.0);
        if age >= settings.stale_after.as_secs_f64() {
            return Verdict::Rejected(format!(
                "stale: its timestamp is {age:.0} s old (stale_after_s is {} s){}",
                settings.stale_after.as_secs_f64(),
                if message.retained { "; a retained message the publisher left behind" } else { "" }
            ));
        }
        read_at = message.at.checked_sub(Duration::from_secs_f64(age)).unwrap_or(message.at);
    }
    battery.read_at = Some(read_at);
    Verdict::Reading(Box::new(battery))
}

/// Seconds since 1970 by the wall clock.
fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Listens until `shutdown` turns true (or the connection's hub is gone).
pub async fn run_mqtt(
    settings: MqttSettings,
    mut messages: mpsc::Receiver<Incoming>,
    sub: Subscriber,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_logged: Option<Instant> = None;
    let mut rejected_since_log = 0u64;
    loop {
        tokio::select! {
            message = messages.recv() => {
                let Some(message) = message else { return };
                match judge(&message, unix_now(), &settings) {
                    Verdict::Reading(battery) => publish(&sub, Ok(*battery), false),
                    Verdict::Rejected(why) => {
                        rejected_since_log += 1;
                        let due = last_logged.is_none_or(|t| t.elapsed() >= BAD_MESSAGE_LOG_EVERY);
                        if due {
                            tracing::warn!(
                                source = %settings.source, topic = %message.topic, reason = %why,
                                rejected = rejected_since_log,
                                "MQTT message rejected: the reading is left as it was (logged at most once a minute; \
                                 `rejected` counts them since the last line)"
                            );
                            last_logged = Some(Instant::now());
                            rejected_since_log = 0;
                        }
                    }
                }
            }
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = include_str!("../../tests/mqtt/minimal.json");

    fn settings() -> MqttSettings {
        MqttSettings { source: "mqtt://h:1883/t".into(), stale_after: Duration::from_secs(10) }
    }

    fn message(payload: String) -> Incoming {
        Incoming { topic: "t".into(), payload: payload.into_bytes(), at: Instant::now(), retained: true }
    }

    fn with_timestamp(t: f64) -> String {
        let mut v: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
        v["timestamp"] = t.into();
        v.to_string()
    }

    #[test]
    fn a_message_timestamped_older_than_stale_after_is_rejected() {
        let m = message(with_timestamp(1_000_000.0));
        let Verdict::Rejected(why) = judge(&m, 1_000_010.0, &settings()) else { panic!("accepted") };
        assert!(why.starts_with("stale: its timestamp is 10 s old") && why.contains("retained"), "{why}");
    }

    #[test]
    fn a_fresh_timestamp_dates_the_reading_back() {
        let m = message(with_timestamp(1_000_000.0));
        let Verdict::Reading(b) = judge(&m, 1_000_004.0, &settings()) else { panic!("rejected") };
        let age = m.at.duration_since(b.read_at.unwrap());
        assert!((age.as_secs_f64() - 4.0).abs() < 1e-6, "{age:?}");
        // A clock ahead: age 0.
        let Verdict::Reading(b) = judge(&m, 999_990.0, &settings()) else { panic!("rejected") };
        assert_eq!(b.read_at, Some(m.at));
    }
}
