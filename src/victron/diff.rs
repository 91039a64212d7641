//! Change detection between two cycles: only changed paths go into the cycle's `ItemsChanged`
//! (`victron-dbus.md` §2.4).
//!
//! Floats compare **exactly** (`==`, so `-0.0 == 0.0`), without an epsilon: every value comes from
//! an integer register divided by a fixed scale, so a real change is at least one register step and
//! an unchanged reading yields the identical float. An epsilon could only hide real (small) changes
//! or, if too small, do nothing. NaN never reaches the table ([`super::value::Value::f64`] maps it to
//! invalid).

use super::paths::{Item, Items};

/// Paths of `next` whose value differs from `prev`, or that `prev` lacks, in path order. Paths only
/// in `prev` are ignored: the path set of a service never shrinks.
pub fn diff(prev: &Items, next: &Items) -> Vec<(String, Item)> {
    next.iter()
        .filter(|(path, item)| prev.get(*path).is_none_or(|old| old.value != item.value))
        .map(|(path, item)| (path.clone(), item.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::victron::value::{Unit, Value};

    fn items(entries: &[(&str, Value)]) -> Items {
        entries.iter().map(|(p, v)| ((*p).to_owned(), Item { value: v.clone(), unit: Unit::Plain })).collect()
    }

    #[test]
    fn unchanged_gives_nothing() {
        let a = items(&[("/Soc", Value::F64(50.0)), ("/State", Value::I32(9))]);
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn only_changed_paths_are_reported() {
        let a = items(&[("/Dc/0/Voltage", Value::F64(52.0)), ("/Soc", Value::F64(50.0))]);
        let b = items(&[("/Dc/0/Voltage", Value::F64(52.01)), ("/Soc", Value::F64(50.0))]);
        let changes = diff(&a, &b);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, "/Dc/0/Voltage");
        assert_eq!(changes[0].1.value, Value::F64(52.01));
    }

    #[test]
    fn validity_and_type_changes_count() {
        let a = items(&[("/A", Value::F64(1.0)), ("/B", Value::Invalid), ("/C", Value::I32(1))]);
        let b = items(&[("/A", Value::Invalid), ("/B", Value::F64(0.0)), ("/C", Value::F64(1.0))]);
        assert_eq!(diff(&a, &b).len(), 3);
    }

    #[test]
    fn negative_zero_equals_zero_and_new_paths_are_changes() {
        let a = items(&[("/A", Value::F64(0.0))]);
        let b = items(&[("/A", Value::F64(-0.0)), ("/New", Value::I32(1))]);
        let changes = diff(&a, &b);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, "/New");
    }
}
