//! Whether a pack is a member of its bank now, from its poll results. Pure.
//!
//! The single-battery grace period (`stale_after_s`) is too slow for a bank: while a pack that is
//! gone still counts, the others carry its current over their ratings. So a pack leaves the
//! bank's available set at once when its device is gone (open or I/O fails, the port's path
//! vanished) or after [`LEAVE_AFTER_FAILURES`] failed polls in a row (timeouts, bad replies),
//! and it rejoins only after [`REJOIN_AFTER_GOOD`] good replies in a row (a flapping cable must
//! not toggle the limits every poll). The first reading after start-up joins at once.

/// Failed polls in a row after which a pack leaves the bank.
pub const LEAVE_AFTER_FAILURES: u32 = 2;

/// Good replies in a row after which a pack that left rejoins.
pub const REJOIN_AFTER_GOOD: u32 = 3;

/// One pack's membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackHealth {
    member: bool,
    ever_joined: bool,
    good_in_a_row: u32,
    failures_in_a_row: u32,
    left_because: Option<String>,
}

/// What one poll result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// The pack left the bank.
    Left,
    /// The pack (re)joined the bank.
    Joined,
}

impl PackHealth {
    /// A good reading.
    pub fn on_reading(&mut self) -> Change {
        self.failures_in_a_row = 0;
        self.good_in_a_row = self.good_in_a_row.saturating_add(1);
        if !self.member && (!self.ever_joined || self.good_in_a_row >= REJOIN_AFTER_GOOD) {
            self.member = true;
            self.ever_joined = true;
            self.left_because = None;
            return Change::Joined;
        }
        Change::None
    }

    /// A failed poll; `device_gone` when the device itself is gone (no retry can help).
    pub fn on_failure(&mut self, device_gone: bool, error: &str) -> Change {
        self.good_in_a_row = 0;
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        if device_gone || self.failures_in_a_row >= LEAVE_AFTER_FAILURES {
            return self.leave(error);
        }
        Change::None
    }

    /// Leaves the bank (also when its monitor says the BMS is lost).
    pub fn leave(&mut self, why: &str) -> Change {
        self.good_in_a_row = 0;
        if self.member {
            self.member = false;
            self.left_because = Some(why.to_owned());
            return Change::Left;
        }
        Change::None
    }

    /// Whether the pack counts in the bank now.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// Why it left, while it is out.
    pub fn left_because(&self) -> Option<&str> {
        self.left_because.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reading_joins_and_two_timeouts_leave() {
        let mut h = PackHealth::default();
        assert!(!h.is_member());
        assert_eq!(h.on_reading(), Change::Joined);
        assert_eq!(h.on_failure(false, "timeout"), Change::None, "one timeout is not a dropout");
        assert!(h.is_member());
        assert_eq!(h.on_reading(), Change::None);
        assert_eq!(h.on_failure(false, "timeout"), Change::None);
        assert_eq!(h.on_failure(false, "timeout"), Change::Left);
        assert_eq!(h.left_because(), Some("timeout"));
    }

    #[test]
    fn a_gone_device_leaves_at_once_and_rejoins_after_three_good_replies() {
        let mut h = PackHealth::default();
        h.on_reading();
        assert_eq!(h.on_failure(true, "gone"), Change::Left);
        assert_eq!(h.on_reading(), Change::None);
        assert_eq!(h.on_reading(), Change::None);
        assert_eq!(h.on_failure(false, "timeout"), Change::None, "a failure restarts the count");
        assert_eq!(h.on_reading(), Change::None);
        assert_eq!(h.on_reading(), Change::None);
        assert!(!h.is_member());
        assert_eq!(h.on_reading(), Change::Joined);
        assert!(h.is_member());
        assert_eq!(h.left_because(), None);
    }
}
