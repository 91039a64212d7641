//! The CAN listener loop: owns the link, feeds every frame to the protocol's listener
//! (`bms::listen`), sends the host keep-alive, and hands each battery's reading to the same
//! per-battery `watch` channel as the serial poll loops, so monitor, control and D-Bus are the
//! same for every BMS.

use super::{publish, ReadError, Subscriber};
use crate::bms::listen::{ListenSettings, Listener};
use crate::transport::can::{CanFrame, CanLink};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What one CAN battery needs besides its link.
#[derive(Debug, Clone)]
pub struct CanSettings {
    /// Interface name, for messages.
    pub interface: String,
    /// The scale of the pack voltage (0x356: 0.01 V, some BMSes 0.1 V).
    pub voltage_scale_v: f64,
    /// Grace period: older frames are stale.
    pub stale_after: Duration,
    /// How often a reading is handed on.
    pub publish_every: Duration,
    /// Keep-alive frame and period; `None` = off.
    pub keepalive: Option<(CanFrame, Duration)>,
}

impl CanSettings {
    /// What the protocol's listener is told, for the batteries at `cell_counts` (address,
    /// configured cells).
    pub fn listen(&self, cell_counts: Vec<(Option<u8>, Option<u16>)>) -> ListenSettings {
        ListenSettings {
            interface: self.interface.clone(),
            stale_after: self.stale_after,
            voltage_scale_v: self.voltage_scale_v,
            cell_counts,
        }
    }
}

/// Feeds every frame of the link `open` gives to `listener` and hands each subscriber its
/// battery every `publish_every`, until `shutdown` turns true; reopens the link when it fails.
pub async fn run_listener<L, F>(
    settings: CanSettings,
    mut listener: Box<dyn Listener>,
    mut open: F,
    subs: Vec<Subscriber>,
    mut shutdown: watch::Receiver<bool>,
) where
    L: CanLink,
    F: FnMut() -> std::io::Result<L> + Send,
{
    let mut bad_frames_logged = false;
    // The link itself failed: every battery of the bus is gone.
    let publish_all = |opening: bool, error: std::io::Error| {
        let error =
            ReadError::CanLink { interface: settings.interface.clone(), opening, error: error.into() };
        for sub in &subs {
            publish(sub, Err(error.clone()), true);
        }
    };
    loop {
        let mut link = match open() {
            Ok(link) => {
                tracing::info!(interface = %settings.interface, "CAN interface open");
                link
            }
            Err(err) => {
                publish_all(true, err);
                tokio::select! {
                    _ = tokio::time::sleep(settings.publish_every) => continue,
                    _ = shutdown.changed() => if *shutdown.borrow() { return } else { continue },
                }
            }
        };
        listener.reset();
        let mut ticker = tokio::time::interval(settings.publish_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let keepalive_period = settings.keepalive.as_ref().map_or(Duration::from_secs(3600), |(_, p)| *p);
        let mut keepalive = tokio::time::interval(keepalive_period);
        let mut send_failed = false;
        loop {
            tokio::select! {
                frame = link.recv() => match frame {
                    Ok(frame) => {
                        if let Err(err) = listener.feed(Instant::now(), frame.id, &frame.data) {
                            if !bad_frames_logged {
                                tracing::warn!(interface = %settings.interface, id = frame.id, error = %err, "CAN frame ignored (logged once)");
                                bad_frames_logged = true;
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(interface = %settings.interface, error = %err, "CAN interface failed; reopening");
                        publish_all(false, err);
                        break;
                    }
                },
                _ = ticker.tick() => {
                    let now = Instant::now();
                    for sub in &subs {
                        // Frames that stopped are a device gone, not a missed reply (bank/health.rs).
                        let reading = listener.reading(now, sub.address).map_err(|missing| ReadError::CanSilent {
                            interface: settings.interface.clone(),
                            address: sub.address,
                            missing,
                        });
                        let gone = reading.is_err();
                        publish(sub, reading, gone);
                    }
                    if let Some(notice) = listener.take_notice() {
                        tracing::warn!(interface = %settings.interface, "{notice}");
                    }
                }
                _ = keepalive.tick(), if settings.keepalive.is_some() => {
                    if let Some((frame, _)) = &settings.keepalive {
                        match link.send(frame).await {
                            Ok(()) => send_failed = false,
                            Err(err) if !send_failed => {
                                send_failed = true;
                                tracing::warn!(interface = %settings.interface, error = %err, "cannot send the CAN keep-alive (said once until it works)");
                            }
                            Err(_) => {}
                        }
                    }
                }
                _ = shutdown.changed() => if *shutdown.borrow() { return },
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.publish_every) => {}
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

#[cfg(test)]
#[path = "can_tests.rs"]
mod tests;
