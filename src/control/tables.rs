//! Reading a `[x, fraction]` limit table at one x.
//!
//! Points may be given in any x order. Outside the table the nearest end point applies. Between
//! two points, linear mode interpolates; step mode takes the more restrictive (smaller) neighbour,
//! for every table alike (the incumbent picked a different neighbour per table).

use super::config::TableMode;

/// The fraction the table gives at `x`; `None` for an empty table or a non-finite `x`.
pub fn fraction(points: &[[f64; 2]], x: f64, mode: TableMode) -> Option<f64> {
    if !x.is_finite() {
        return None;
    }
    let mut sorted: Vec<[f64; 2]> = points.iter().copied().filter(|[px, _]| px.is_finite()).collect();
    sorted.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let first = *sorted.first()?;
    let last = *sorted.last()?;
    if x <= first[0] {
        return Some(first[1].clamp(0.0, 1.0));
    }
    if x >= last[0] {
        return Some(last[1].clamp(0.0, 1.0));
    }
    let right = sorted.iter().position(|p| p[0] >= x)?;
    let [x1, y1] = *sorted.get(right.checked_sub(1)?)?;
    let [x2, y2] = *sorted.get(right)?;
    let y = if x == x2 {
        y2
    } else {
        match mode {
            TableMode::Step => y1.min(y2),
            TableMode::Linear => y1 + (y2 - y1) * (x - x1) / (x2 - x1),
        }
    };
    Some(y.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The incumbent's default tables (bms-bridge's before the derived ones).
    const CHARGE: [[f64; 2]; 5] = [[3.375, 1.0], [3.400, 0.25], [3.425, 0.05], [3.450, 0.005], [3.500, 0.0]];
    const DISCHARGE: [[f64; 2]; 5] =
        [[2.800, 0.0], [2.900, 0.005], [3.000, 0.05], [3.100, 0.25], [3.190, 1.0]];
    const TEMPERATURE: [[f64; 2]; 8] = [
        [0.0, 0.0],
        [2.0, 0.25],
        [5.0, 0.5],
        [10.0, 1.0],
        [40.0, 1.0],
        [45.0, 0.5],
        [50.0, 0.25],
        [55.0, 0.0],
    ];

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn linear_matches_the_incumbent_worked_examples() {
        // 16S, max cell 3.39 V -> 27.5 A of 50 A.
        let f = fraction(&CHARGE, 3.39, TableMode::Linear);
        assert!(close(f.map(|f| f * 50.0), 27.5), "{f:?}");
        // min cell 3.05 V -> 9 A of 60 A.
        let f = fraction(&DISCHARGE, 3.05, TableMode::Linear);
        assert!(close(f.map(|f| f * 60.0), 9.0), "{f:?}");
        // 47 °C -> 20 A of 50 A.
        let f = fraction(&TEMPERATURE, 47.0, TableMode::Linear);
        assert!(close(f.map(|f| f * 50.0), 20.0), "{f:?}");
    }

    #[test]
    fn ends_clamp_and_order_does_not_matter() {
        let descending = [[3.5, 0.0], [3.4, 0.5], [3.3, 1.0]];
        assert!(close(fraction(&descending, 3.0, TableMode::Linear), 1.0));
        assert!(close(fraction(&descending, 3.9, TableMode::Linear), 0.0));
        assert!(close(fraction(&descending, 3.45, TableMode::Linear), 0.25));
    }

    #[test]
    fn step_takes_the_more_restrictive_neighbour_on_both_slopes() {
        // Falling table (charge cell voltage): between 3.400 (0.25) and 3.425 (0.05) -> 0.05.
        assert!(close(fraction(&CHARGE, 3.41, TableMode::Step), 0.05));
        // Rising table (discharge cell voltage): between 3.0 (0.05) and 3.1 (0.25) -> 0.05.
        assert!(close(fraction(&DISCHARGE, 3.05, TableMode::Step), 0.05));
        // Exactly on a point: that point.
        assert!(close(fraction(&TEMPERATURE, 5.0, TableMode::Step), 0.5));
    }

    #[test]
    fn empty_or_nan_gives_none() {
        assert_eq!(fraction(&[], 1.0, TableMode::Linear), None);
        assert_eq!(fraction(&[[1.0, 1.0]], f64::NAN, TableMode::Linear), None);
    }
}
