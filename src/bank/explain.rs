//! The bank's `/Info/ChargeLimitation` and `/Info/DischargeLimitation` in words. When the packs'
//! split ([`super::limits`]) binds the bank, its own control only sees a BMS limit; these texts
//! name the pack that sets it (its place in `[[bank]] packs`, 1-based), the pack's own rule and
//! limit, and the pack's part of the bank current: `pack 4: Config max 50.0 A, 52 % of the
//! current` is why the bank may take 96 A. Pure.

use super::limits::{BankLimits, Limit, PackTarget};
use crate::control::current::{LimitReason, Limitation};
use crate::control::ChargeLimits;

/// Below this part of the bank current a share is not worth printing (series banks: every pack
/// carries the whole current).
const WHOLE_SHARE: f64 = 0.995;

/// Rewrites the limitation texts of the bank's `limits` where the split binds them; `targets`
/// are the packs' own (charge, discharge) limits, in `[[bank]] packs` order.
pub fn name_the_packs(limits: &mut ChargeLimits, split: &BankLimits, targets: &[(PackTarget, PackTarget)]) {
    let charge = split.charge.by.and_then(|i| targets.get(i)).map(|t| &t.0);
    let discharge = split.discharge.by.and_then(|i| targets.get(i)).map(|t| &t.1);
    limits.charge_limitation = text(&limits.charge_reason, &split.charge, charge);
    limits.discharge_limitation = text(&limits.discharge_reason, &split.discharge, discharge);
}

/// The bank's reasons with "BMS limit" (the split) replaced by the pack that sets it.
fn text(bank: &Limitation, split: &Limit, pack: Option<&PackTarget>) -> String {
    let words: Vec<String> = bank
        .reasons
        .iter()
        .map(|reason| match reason {
            LimitReason::BmsLimit => pack_words(split, pack),
            other => other.text().to_owned(),
        })
        .collect();
    let mut text = words.join(", ");
    if bank.recovering {
        text.push_str(" (recovering)");
    }
    text
}

fn pack_words(split: &Limit, pack: Option<&PackTarget>) -> String {
    let (Some(index), Some((pack_a, reasons))) = (split.by, pack) else {
        return "no pack can take current".to_owned();
    };
    let rules = Limitation { reasons: reasons.clone(), recovering: false };
    let mut words = format!("pack {}: {rules} {pack_a:.1} A", index + 1);
    if split.amps > 0.0 {
        let share = pack_a / split.amps;
        if share < WHOLE_SHARE {
            words.push_str(&format!(", {:.0} % of the current", share * 100.0));
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limitation(reasons: &[LimitReason], recovering: bool) -> Limitation {
        Limitation { reasons: reasons.to_vec(), recovering }
    }

    #[test]
    fn the_split_is_named_by_pack_rule_and_share() {
        let split = Limit { amps: 100.0, by: Some(2) };
        let pack = (25.0, vec![LimitReason::CellVoltage]);
        let bank = limitation(&[LimitReason::BmsLimit], true);
        assert_eq!(
            text(&bank, &split, Some(&pack)),
            "pack 3: Cell voltage 25.0 A, 25 % of the current (recovering)"
        );
    }

    #[test]
    fn other_bank_rules_stay_and_a_whole_share_is_not_printed() {
        let split = Limit { amps: 50.0, by: Some(0) };
        let pack = (50.0, vec![LimitReason::ConfigMax]);
        let bank = limitation(&[LimitReason::CellVoltage, LimitReason::BmsLimit], false);
        assert_eq!(text(&bank, &split, Some(&pack)), "Cell voltage, pack 1: Config max 50.0 A");
        let own = limitation(&[LimitReason::Temperature], false);
        assert_eq!(text(&own, &split, Some(&pack)), "Temperature");
    }

    #[test]
    fn no_pack_able_says_so() {
        let split = Limit { amps: 0.0, by: None };
        let bank = limitation(&[LimitReason::BmsLimit], false);
        assert_eq!(text(&bank, &split, None), "no pack can take current");
    }
}
