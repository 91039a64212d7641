//! Distinct identities for packs that report the same BMS serial (JBD UP16S units ship with
//! identical serials): each keeps its own unique id (serial plus port and address), so its own
//! state file and device instance. A `[[port.battery]] identity = "..."` is taken as given
//! (`app::identity`). Never merge two packs silently: the clash is logged once and `doctor`
//! shows it.

use crate::victron::Identity;
use std::sync::{Mutex, PoisonError};

/// The unique ids the daemon's batteries use, shared by their tasks: a battery whose id another
/// battery already holds gets its qualified id instead (and one warning).
#[derive(Debug, Default)]
pub struct Registry(Mutex<Vec<(String, String)>>);

impl Registry {
    /// `identity` for the battery `label`, made distinct from every other battery's; claiming
    /// again (the serial became known) replaces the battery's earlier claim.
    pub fn claim(&self, mut identity: Identity, label: &str) -> Identity {
        let mut claims = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let before = claims.iter().position(|(l, _)| l == label).map(|i| claims.remove(i).1);
        let holder = claims.iter().find(|(_, id)| *id == identity.unique_id).map(|(l, _)| l.clone());
        if let Some(holder) = holder {
            let qualified = qualified_id(&identity);
            if before.as_deref() != Some(qualified.as_str()) {
                tracing::warn!(
                    battery = %label, other = %holder, id = %identity.unique_id, unique_id = %qualified,
                    "two batteries report the same serial: this one is kept apart as serial + port + address (set `identity` in [[port.battery]] to choose)"
                );
            }
            identity.unique_id = qualified;
        }
        claims.push((label.to_owned(), identity.unique_id.clone()));
        identity
    }
}

/// The unique id of a pack whose serial another pack reports too: serial, port, address.
pub fn qualified_id(identity: &Identity) -> String {
    format!("{}_{}", identity.unique_id, identity.service_suffix)
}

/// The ids that more than one of `ids` share.
pub fn clashes<'a>(ids: impl IntoIterator<Item = &'a str> + Clone) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, id) in ids.clone().into_iter().enumerate() {
        let again = ids.clone().into_iter().skip(i + 1).any(|other| other == id);
        if again && !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    out
}

/// `identities` with every clashing unique id qualified by port and address; one warning per
/// clash (`label`: whose packs they are).
pub fn distinct(mut identities: Vec<Identity>, label: &str) -> Vec<Identity> {
    let clashing = clashes(identities.iter().map(|i| i.unique_id.as_str()));
    for id in &clashing {
        let ports: Vec<&str> =
            identities.iter().filter(|i| &i.unique_id == id).map(|i| i.connection.as_str()).collect();
        tracing::warn!(
            battery = %label, serial = %id, ?ports,
            "packs report the same serial: each gets serial + port + address as its identity (set `identity` in [[port.battery]] to choose)"
        );
    }
    for identity in identities.iter_mut().filter(|i| clashing.contains(&i.unique_id)) {
        // /Serial stays what the BMS says; the unique id is what tells the packs apart.
        identity.unique_id = qualified_id(identity);
    }
    identities
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(unique: &str, suffix: &str) -> Identity {
        Identity {
            service_suffix: suffix.into(),
            unique_id: unique.into(),
            product_name: String::new(),
            connection: format!("Serial /dev/{suffix}"),
            custom_name: String::new(),
            firmware_version: String::new(),
            hardware_version: String::new(),
            serial: unique.into(),
            fallback_device_instance: 1,
            max_cells: 16,
            manufacturer: String::new(),
            connection_information: String::new(),
        }
    }

    #[test]
    fn the_registry_keeps_a_second_battery_with_the_same_serial_apart() {
        let registry = Registry::default();
        let a = registry.claim(ident("JBD48100000", "ttyUSB0"), "a");
        let b = registry.claim(ident("JBD48100000", "ttyUSB1"), "b");
        assert_eq!(a.unique_id, "JBD48100000");
        assert_eq!(b.unique_id, "JBD48100000_ttyUSB1");
        let again = registry.claim(ident("JBD48100000", "ttyUSB0"), "a");
        assert_eq!(again.unique_id, "JBD48100000", "claiming again keeps the battery's own id");
        let c = registry.claim(ident("X1", "ttyUSB2"), "c");
        assert_eq!(c.unique_id, "X1");
    }

    #[test]
    fn the_same_serial_on_two_ports_gives_two_ids_and_others_keep_theirs() {
        let out = distinct(
            vec![ident("JBD48100000", "ttyUSB0"), ident("JBD48100000", "ttyUSB1"), ident("X9", "ttyUSB2")],
            "bank",
        );
        let ids: Vec<&str> = out.iter().map(|i| i.unique_id.as_str()).collect();
        assert_eq!(ids, ["JBD48100000_ttyUSB0", "JBD48100000_ttyUSB1", "X9"]);
        assert_eq!(out[0].serial, "JBD48100000", "/Serial is the BMS's");
        assert!(clashes(ids.iter().copied()).is_empty());
    }
}
