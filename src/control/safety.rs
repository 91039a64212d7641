//! What is published while the BMS is lost (`reference/victron-dbus.md` §9 item 8).
//!
//! CCL is 0 at once and CVL is the float voltage: never invalid values, which would leave the
//! Multi at its last limits. DCL keeps its last value for a while so loads do not black out on
//! a cable glitch, then goes to 0: after `lost_discharge_timeout_s` when the last known lowest
//! cell was at or above `lost_discharge_safe_cell_voltage`, after [`UNSAFE_LOST_DISCHARGE_S`]
//! when it was below or never known.

use super::config::ChargeConfig;
use std::time::{Duration, Instant};

/// DCL timeout after a loss when the last lowest cell was low or unknown (s).
pub const UNSAFE_LOST_DISCHARGE_S: f64 = 60.0;

/// How long DCL is kept after the last good reading.
pub fn lost_discharge_timeout(cfg: &ChargeConfig, last_min_cell_v: Option<f64>) -> Duration {
    let healthy = last_min_cell_v.is_some_and(|v| v >= cfg.lost_discharge_safe_cell_voltage);
    let secs = if healthy { cfg.lost_discharge_timeout_s } else { UNSAFE_LOST_DISCHARGE_S };
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO)
}

/// True once DCL must be 0 for a BMS lost since `since`.
pub fn discharge_stopped(
    cfg: &ChargeConfig,
    now: Instant,
    since: Instant,
    last_min_cell_v: Option<f64>,
) -> bool {
    now.saturating_duration_since(since) >= lost_discharge_timeout(cfg, last_min_cell_v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_cells_keep_dcl_for_the_long_timeout_others_for_60_s() {
        let cfg = ChargeConfig::default();
        assert_eq!(lost_discharge_timeout(&cfg, Some(3.225)), Duration::from_secs(1800));
        assert_eq!(lost_discharge_timeout(&cfg, Some(3.224)), Duration::from_secs(60));
        assert_eq!(lost_discharge_timeout(&cfg, None), Duration::from_secs(60));
        let t0 = crate::sim::closed_loop::fake_clock_start();
        assert!(!discharge_stopped(&cfg, t0 + Duration::from_secs(59), t0, None));
        assert!(discharge_stopped(&cfg, t0 + Duration::from_secs(60), t0, None));
    }
}
