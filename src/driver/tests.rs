//! The poll loop on the daemon's single-threaded runtime: a port whose open blocks (a dead USB
//! adapter) holds up no other port.

use super::*;
use crate::config::Protocol;
use std::time::Instant as StdInstant;

fn port_on(device: &str) -> PortConfig {
    PortConfig {
        device: device.to_owned(),
        protocol: Protocol::Jbd,
        baud: None,
        addresses: None,
        timeout_ms: 300,
        batteries: Vec::new(),
        can: Default::default(),
        mqtt: Default::default(),
        adapter: None,
    }
}

/// Two JBD packs, one on a port whose open blocks 10 s: on a current-thread runtime (as on the
/// GX) the other keeps its 250 ms poll cycle throughout, and the blocked one reads once its
/// open returns. Fails when the open runs on the runtime (no reading for 10 s).
#[test]
fn a_port_whose_open_blocks_does_not_stall_the_others() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let healthy = crate::sim::spawn(Protocol::Jbd, &[], 4).unwrap();
        let stuck = crate::sim::spawn(Protocol::Jbd, &[], 4).unwrap();
        let stuck_path = stuck.path().display().to_string();
        crate::transport::serial::tests::make_open_block(&stuck_path, Duration::from_secs(10));
        let (stop_tx, stop) = watch::channel(false);
        let (healthy_tx, mut healthy_rx) = watch::channel(None);
        let (stuck_tx, mut stuck_rx) = watch::channel(None);
        let interval = Duration::from_millis(250);
        let start = StdInstant::now();
        let stuck_loop = tokio::spawn(run_port(
            port_on(&stuck_path),
            interval,
            vec![Subscriber { address: None, tx: stuck_tx }],
            stop.clone(),
        ));
        let healthy_loop = tokio::spawn(run_port(
            port_on(&healthy.path().display().to_string()),
            interval,
            vec![Subscriber { address: None, tx: healthy_tx }],
            stop,
        ));
        // While the other port's open blocks: a good reading at least every 2 cycles.
        let mut readings = 0;
        let mut longest_gap = Duration::ZERO;
        let mut last = StdInstant::now();
        while start.elapsed() < Duration::from_secs(9) {
            let changed = tokio::time::timeout(Duration::from_secs(2), healthy_rx.changed()).await;
            assert!(matches!(changed, Ok(Ok(()))), "the healthy port stopped publishing");
            let update = healthy_rx.borrow_and_update().clone();
            if update.is_some_and(|u| u.result.is_ok()) {
                readings += 1;
                longest_gap = longest_gap.max(last.elapsed());
                last = StdInstant::now();
            }
        }
        assert!(stuck_rx.borrow().is_none(), "the blocked open has not returned yet");
        assert!(readings >= 25, "{readings} readings in 9 s at 250 ms");
        assert!(longest_gap < interval * 2, "longest gap between readings {longest_gap:?}");
        // Once its open returns, the blocked port reads too.
        let changed = tokio::time::timeout(Duration::from_secs(5), stuck_rx.changed()).await;
        assert!(matches!(changed, Ok(Ok(()))), "the blocked port never read");
        assert!(start.elapsed() >= Duration::from_secs(10), "its open did block");
        stop_tx.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), healthy_loop).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), stuck_loop).await;
    });
}

/// An unplugged adapter (its path removed) is noticed at once through inotify, not at the next
/// presence check or poll.
#[tokio::test]
async fn a_removed_device_path_is_noticed_at_once() {
    let dir = std::env::temp_dir().join(format!("bms-bridge-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let device = dir.join("ttyUSB9");
    std::fs::write(&device, b"").unwrap();
    std::fs::write(dir.join("ttyUSB8"), b"").unwrap();
    let mut presence = Presence::new(&device.display().to_string());
    assert!(presence.watch.is_some(), "inotify is available here");
    let remove = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Another device going first changes nothing.
        std::fs::remove_file(dir.join("ttyUSB8")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::remove_file(&device).unwrap();
        StdInstant::now()
    };
    let (removed, ()) = tokio::join!(remove, async {
        tokio::time::timeout(Duration::from_secs(2), presence.gone()).await.expect("noticed");
    });
    let noticed = removed.elapsed();
    assert!(noticed < Duration::from_millis(100), "noticed {noticed:?} after the removal");
    let _ = std::fs::remove_dir_all(&dir);
}
