//! Issue 17, identity: four JBD UP16S packs that all report the same BMS serial (as shipped
//! units do), two standalone and two in one bank, the real daemon and a private D-Bus with a
//! settings service that hands out device instances per unique id. Each pack must keep its own
//! identity: its own device instance and (standalone) its own state file, with one warning per
//! clash in the log; `/Serial` stays the BMS's.

mod support;

use bms_bridge::config::Protocol;
use bms_bridge::sim;
use bms_bridge::victron::private_bus::PrivateBus;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::daemon::*;
use zbus::zvariant::{OwnedValue, Str};

/// localsettings as far as device instances go: each new `ClassAndVrmInstance` path gets the
/// next instance; the paths asked for are kept.
struct RecordingSettings {
    paths: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "com.victronenergy.Settings")]
impl RecordingSettings {
    async fn add_settings(
        &self,
        definitions: Vec<HashMap<String, OwnedValue>>,
    ) -> Vec<HashMap<String, OwnedValue>> {
        let mut paths = self.paths.lock().unwrap();
        definitions
            .iter()
            .map(|definition| {
                let path: String = definition["path"].try_clone().unwrap().try_into().unwrap();
                let value = if path.ends_with("/ClassAndVrmInstance") {
                    let index = paths.iter().position(|p| *p == path).unwrap_or_else(|| {
                        paths.push(path.clone());
                        paths.len() - 1
                    });
                    format!("battery:{}", 20 + index)
                } else {
                    String::new()
                };
                HashMap::from([
                    ("path".to_owned(), OwnedValue::from(Str::from(path))),
                    ("error".to_owned(), OwnedValue::from(0i32)),
                    ("value".to_owned(), OwnedValue::from(Str::from(value))),
                ])
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_with_the_same_serial_keep_distinct_identities() {
    let dir = scratch_dir("bank-identity");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let paths = Arc::new(Mutex::new(Vec::new()));
    let _settings = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .serve_at("/", RecordingSettings { paths: paths.clone() })
        .unwrap()
        .name("com.victronenergy.settings")
        .unwrap()
        .build()
        .await
        .unwrap();
    let names = ["ttyA", "ttyB", "ttyC", "ttyD"];
    let sims: Vec<_> = names.iter().map(|_| sim::spawn(Protocol::JbdUp16s, &[], 16).unwrap()).collect();
    let d = dir.display();
    let mut text = format!(
        "[daemon]\npoll_interval_ms = 250\nstale_after_s = 2.0\nstate_dir = \"{d}/state\"\n\n\
         [dbus]\nbus = \"{}\"\ndevice_instance = 7\n",
        bus.address()
    );
    for (name, sim) in names.iter().zip(&sims) {
        link_pty(&dir.join(name), sim.path());
        text += &format!("\n[[port]]\ndevice = \"{d}/{name}\"\nprotocol = \"jbd_up16s\"\ntimeout_ms = 200\n");
    }
    text +=
        &format!("\n[[bank]]\nname = \"Twins\"\npacks = [\"{d}/ttyC\", \"{d}/ttyD\"]\nstartup_wait_s = 5\n");
    let daemon = start_daemon_with_config(&dir, &text);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();

    let mut instances = Vec::new();
    for name in names {
        let service = format!("com.victronenergy.battery.{name}");
        let items =
            wait_for_service(&conn, &service, Duration::from_secs(15), "pack service", connected).await;
        let serial = value(&items, "/Serial").clone();
        assert_eq!(String::try_from(serial).unwrap(), "SIMUP16S01", "{name}: /Serial is the BMS's");
        instances.push((name, number(&items, "/DeviceInstance").unwrap()));
    }
    let mut distinct: Vec<f64> = instances.iter().map(|(_, i)| *i).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "one device instance each: {instances:?}");
    let recorded = paths.lock().unwrap().clone();
    println!("settings keys: {recorded:?}");
    assert!(recorded.iter().any(|p| p.contains("bmsbridge_SIMUP16S01_ttyC/")), "{recorded:?}");
    assert!(recorded.iter().any(|p| p.contains("bmsbridge_SIMUP16S01_ttyD/")), "{recorded:?}");

    // The standalone pair: two state files, one keyed by the plain serial, one qualified.
    let state = dir.join("state");
    let files = || -> Vec<String> {
        let mut f: Vec<String> = std::fs::read_dir(&state)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        f.sort();
        f
    };
    for _ in 0..50 {
        if files().iter().filter(|f| f.starts_with("SIMUP16S01")).count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let saved = files();
    let standalone: Vec<&String> = saved.iter().filter(|f| f.starts_with("SIMUP16S01")).collect();
    assert_eq!(standalone.len(), 2, "{saved:?}");
    assert!(standalone.iter().any(|f| *f == "SIMUP16S01.json"), "{saved:?}");
    assert!(
        standalone.iter().any(|f| *f == "SIMUP16S01_ttyA.json" || *f == "SIMUP16S01_ttyB.json"),
        "{saved:?}"
    );
    let log = daemon_log(&dir);
    assert_eq!(log.matches("packs report the same serial").count(), 1, "one warning for the bank's pair");
    assert_eq!(log.matches("two batteries report the same serial").count(), 1, "one for the standalone pair");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
