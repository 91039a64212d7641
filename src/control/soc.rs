//! State of charge: the BMS's, or coulomb counted; the current average and time-to-go.
//!
//! Coulomb counting integrates the pack current over the real time between readings (at most
//! [`MAX_STEP_S`] per reading, so a gap in readings never books old current). It starts from the
//! saved value, else from the BMS's SoC; it is set to 100 % at the end of absorption (the full
//! charge) and to 0 % when the lowest cell stays below `min_cell_voltage` for [`EMPTY_SYNC_S`]
//! while discharging.

use super::config::{ChargeConfig, SocSource};
use std::time::{Duration, Instant};

/// Longest time one reading's current is integrated over (s).
pub const MAX_STEP_S: f64 = 60.0;
/// How long the lowest cell must stay under min voltage while discharging before SoC is set to 0.
pub const EMPTY_SYNC_S: f64 = 60.0;
/// Below this average current (A) there is no time-to-go.
const IDLE_A: f64 = 0.1;
/// The longest `/TimeToGo` published, 10 days (dbus-serialbattery's cap, its issue 406): what
/// a battery at rest or charging shows.
pub const TIME_TO_GO_MAX_S: f64 = 864_000.0;

/// What the SoC rules read from one reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SocInputs {
    /// Pack current, + = charging (A).
    pub current_a: Option<f64>,
    /// The BMS's SoC (%).
    pub bms_soc_percent: Option<f64>,
    /// Capacity: BMS full capacity, else nominal, else config (Ah).
    pub capacity_ah: Option<f64>,
    /// Lowest cell (V).
    pub min_cell_v: Option<f64>,
}

/// SoC state between readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SocCounter {
    /// Coulomb-counted SoC (%), when counting.
    counted: Option<f64>,
    below_min_since: Option<Instant>,
    average_a: Option<f64>,
    capacity_ah: Option<f64>,
}

impl SocCounter {
    /// The counted SoC (%), for saving.
    pub fn counted(&self) -> Option<f64> {
        self.counted
    }

    /// Takes a saved counted SoC back.
    pub fn restore(&mut self, counted: Option<f64>) {
        self.counted = counted.filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 100.0));
    }

    /// Moving average of the current (A), time constant `current_average_s`.
    pub fn average_a(&self) -> Option<f64> {
        self.average_a
    }

    /// Integrates one reading `dt` after the previous. Returns true when it synced to 0 %.
    pub fn update(&mut self, now: Instant, dt: Duration, cfg: &ChargeConfig, i: &SocInputs) -> bool {
        let real_dt = dt.as_secs_f64();
        let dt = real_dt.min(MAX_STEP_S);
        if i.capacity_ah.is_some() {
            self.capacity_ah = i.capacity_ah;
        }
        if let Some(current) = i.current_a.filter(|c| c.is_finite()) {
            self.average_a = Some(match self.average_a {
                Some(avg) if cfg.current_average_s > 0.0 => {
                    avg + (current - avg) * (1.0 - (-real_dt / cfg.current_average_s).exp())
                }
                _ => current,
            });
        }
        if cfg.soc_source != SocSource::Calculated {
            return false;
        }
        if self.counted.is_none() {
            self.counted = i.bms_soc_percent.filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 100.0));
        }
        if let (Some(soc), Some(current), Some(cap)) = (self.counted, i.current_a, self.capacity_ah) {
            if cap > 0.0 && current.is_finite() {
                self.counted = Some((soc + current * dt / 3600.0 / cap * 100.0).clamp(0.0, 100.0));
            }
        }
        let discharging = i.current_a.is_some_and(|c| c < 0.0);
        let low = i.min_cell_v.is_some_and(|v| v < cfg.min_cell_voltage);
        if discharging && low {
            let since = *self.below_min_since.get_or_insert(now);
            if now.saturating_duration_since(since).as_secs_f64() >= EMPTY_SYNC_S && self.counted != Some(0.0)
            {
                self.counted = Some(0.0);
                return true;
            }
        } else {
            self.below_min_since = None;
        }
        false
    }

    /// Float was entered: the pack is full.
    pub fn sync_full(&mut self, cfg: &ChargeConfig) {
        if cfg.soc_source == SocSource::Calculated {
            self.counted = Some(100.0);
        }
    }

    /// The SoC control uses and publishes as `/Soc`.
    pub fn soc(&self, cfg: &ChargeConfig, bms_soc_percent: Option<f64>) -> Option<f64> {
        match cfg.soc_source {
            SocSource::Bms => bms_soc_percent,
            SocSource::Calculated => self.counted.or(bms_soc_percent),
        }
    }

    /// Seconds until `time_to_go_soc` at the average discharge current, at most
    /// [`TIME_TO_GO_MAX_S`]; at rest or charging the battery does not run down: the maximum
    /// (the GX shows it as 10 days, where an invalid value would read "no data"). `None` without
    /// a current, or discharging without a SoC or a capacity.
    pub fn time_to_go_s(&self, cfg: &ChargeConfig, soc_percent: Option<f64>) -> Option<f64> {
        let avg = self.average_a?;
        if avg >= -IDLE_A {
            return Some(TIME_TO_GO_MAX_S);
        }
        let cap = self.capacity_ah.filter(|c| *c > 0.0)?;
        let usable = (soc_percent? - cfg.time_to_go_soc).max(0.0) / 100.0 * cap;
        Some((usable / -avg * 3600.0).min(TIME_TO_GO_MAX_S))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting() -> ChargeConfig {
        ChargeConfig { soc_source: SocSource::Calculated, ..ChargeConfig::default() }
    }

    fn inputs(current: f64, soc: f64, min_cell: f64) -> SocInputs {
        SocInputs {
            current_a: Some(current),
            bms_soc_percent: Some(soc),
            capacity_ah: Some(100.0),
            min_cell_v: Some(min_cell),
        }
    }

    #[test]
    fn bms_soc_is_used_by_default() {
        let cfg = ChargeConfig::default();
        let mut c = SocCounter::default();
        c.update(
            crate::sim::closed_loop::fake_clock_start(),
            Duration::from_secs(1),
            &cfg,
            &inputs(10.0, 42.0, 3.3),
        );
        assert_eq!(c.soc(&cfg, Some(42.0)), Some(42.0));
        assert_eq!(c.counted(), None);
    }

    #[test]
    fn counting_starts_from_the_bms_and_integrates_current() {
        let cfg = counting();
        let t0 = crate::sim::closed_loop::fake_clock_start();
        let mut c = SocCounter::default();
        c.update(t0, Duration::ZERO, &cfg, &inputs(50.0, 40.0, 3.3));
        for s in 1..=3600 {
            c.update(t0 + Duration::from_secs(s), Duration::from_secs(1), &cfg, &inputs(10.0, 99.0, 3.3));
        }
        // 10 A for 1 h into 100 Ah = +10 %; the BMS value is only the start.
        assert!((c.soc(&cfg, Some(99.0)).unwrap_or(0.0) - 50.0).abs() < 1e-6);
    }

    #[test]
    fn a_gap_in_readings_integrates_at_most_one_minute() {
        let cfg = counting();
        let t0 = crate::sim::closed_loop::fake_clock_start();
        let mut c = SocCounter::default();
        c.update(t0, Duration::ZERO, &cfg, &inputs(0.0, 50.0, 3.3));
        c.update(t0, Duration::from_secs(3600), &cfg, &inputs(-100.0, 50.0, 3.3));
        assert!((c.counted().unwrap_or(0.0) - (50.0 - 100.0 / 60.0)).abs() < 1e-6);
    }

    #[test]
    fn syncs_to_full_and_to_empty_after_60_s_under_min() {
        let cfg = counting();
        let t0 = crate::sim::closed_loop::fake_clock_start();
        let mut c = SocCounter::default();
        c.update(t0, Duration::ZERO, &cfg, &inputs(0.0, 30.0, 3.3));
        c.sync_full(&cfg);
        assert_eq!(c.counted(), Some(100.0));
        let mut synced_at = None;
        for s in 1..=120 {
            let now = t0 + Duration::from_secs(s);
            if c.update(now, Duration::ZERO, &cfg, &inputs(-5.0, 30.0, 2.85)) {
                synced_at = Some(s);
            }
        }
        assert_eq!(synced_at, Some(61));
        assert_eq!(c.counted(), Some(0.0));
    }

    #[test]
    fn time_to_go_uses_the_average_current() {
        let cfg = ChargeConfig::default();
        let t0 = crate::sim::closed_loop::fake_clock_start();
        let mut c = SocCounter::default();
        c.update(t0, Duration::ZERO, &cfg, &inputs(-20.0, 70.0, 3.3));
        // (70 - 20) % of 100 Ah at 20 A = 2.5 h.
        assert_eq!(c.time_to_go_s(&cfg, Some(70.0)), Some(9000.0));
        c.update(t0, Duration::from_secs(300), &cfg, &inputs(0.0, 70.0, 3.3));
        assert!(c.average_a().is_some_and(|a| (a + 20.0 * (-1.0f64).exp()).abs() < 1e-9));
        let mut idle = SocCounter::default();
        assert_eq!(idle.time_to_go_s(&cfg, Some(70.0)), None, "no current yet");
        idle.update(t0, Duration::ZERO, &cfg, &inputs(0.05, 70.0, 3.3));
        assert_eq!(idle.time_to_go_s(&cfg, Some(70.0)), Some(864_000.0), "at rest: 10 days");
        let mut charging = SocCounter::default();
        charging.update(t0, Duration::ZERO, &cfg, &inputs(30.0, 70.0, 3.3));
        assert_eq!(charging.time_to_go_s(&cfg, Some(70.0)), Some(864_000.0), "charging: 10 days");
        let mut trickle = SocCounter::default();
        trickle.update(t0, Duration::ZERO, &cfg, &inputs(-0.2, 70.0, 3.3));
        // 50 Ah at 0.2 A would be 250 h: capped at 10 days (240 h).
        assert_eq!(trickle.time_to_go_s(&cfg, Some(70.0)), Some(864_000.0));
    }
}
