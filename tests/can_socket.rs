//! The CAN driver on a real kernel CAN stack: SocketCAN sockets on `vcan0`.
//!
//! This machine's kernel has no CAN, so `tests/vm/run.sh` boots Debian's kernel in qemu with an
//! initramfs holding can.ko, can-raw.ko, can-dev.ko, vcan.ko and this test binary, brings up
//! `vcan0` and runs the ignored test below. On a host with vcan0 up it runs directly:
//! `cargo test --test can_socket -- --ignored`.

use bms_bridge::bms::victron_can::codec::{self as vc, encode};
use bms_bridge::config::Protocol;
use bms_bridge::driver::can::{run_listener, CanSettings};
use bms_bridge::driver::Subscriber;
use bms_bridge::transport::can::{CanFrame, CanLink, SocketCanLink};
use std::time::Duration;
use tokio::sync::watch;

/// The vectors, built in: the VM has no source tree.
const VECTORS: &str = include_str!("vectors/victron_can.json");

fn vector_frames() -> Vec<CanFrame> {
    let cases: Vec<serde_json::Value> = serde_json::from_str(VECTORS).expect("vector file is JSON");
    let wanted = [
        "pylontech_us5000_new_fw_351",
        "pylontech_us5000_new_fw_355",
        "pylontech_us5000_old_fw_356",
        "pylontech_us5000_old_fw_359",
        "pylontech_us5000_old_fw_35C",
        "pylontech_us5000_new_fw_35E",
        "pylontech_us5000_new_fw_35F",
    ];
    let mut frames: Vec<CanFrame> = wanted
        .iter()
        .map(|name| {
            let case = cases.iter().find(|c| c["name"] == *name).expect("vector case");
            let id =
                u32::from_str_radix(case["can_id"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            let data = case["hex"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect();
            CanFrame { id, data }
        })
        .collect();
    // No conforming real 0x373 exists in the vectors: one from the encoder, cells of a 16S pack
    // at 49.86 V.
    let cells = bms_bridge::battery::Battery {
        min_cell_voltage_v: Some(3.112),
        max_cell_voltage_v: Some(3.121),
        temperatures_c: Some(vec![35.85, 36.85]),
        ..Default::default()
    };
    frames.push(CanFrame { id: vc::CELLS, data: encode::frame(vc::CELLS, &cells).unwrap() });
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a vcan0 interface: tests/vm/run.sh boots a VM that has one"]
async fn socketcan_end_to_end_on_vcan0() {
    let interface = std::env::var("BMS_BRIDGE_CAN_IF").unwrap_or_else(|_| "vcan0".to_owned());
    // busybox `ip` cannot create links: over netlink, as `ip link add vcan0 type vcan; ip link
    // set up vcan0` would.
    if socketcan::CanInterface::open(&interface).is_err() {
        let created =
            socketcan::CanInterface::create_vcan(&interface, None).expect("create vcan0 (root, vcan.ko)");
        created.bring_up().expect("bring vcan0 up");
        println!("created and brought up {interface} over netlink");
    }
    let mut bms = SocketCanLink::open(&interface).expect("open the BMS side socket");
    let settings = CanSettings {
        interface: interface.clone(),
        voltage_scale_v: 0.01,
        stale_after: Duration::from_millis(1500),
        publish_every: Duration::from_millis(100),
        keepalive: Some((CanFrame { id: 0x35E, data: b"BMSBRIDG".to_vec() }, Duration::from_millis(250))),
    };
    let (tx, mut rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let name = interface.clone();
    let make = Protocol::VictronCan.spec().listener.expect("a listened protocol");
    let listener = make(&settings.listen(vec![(None, None)]));
    let driver = tokio::spawn(run_listener(
        settings,
        listener,
        move || SocketCanLink::open(&name),
        vec![Subscriber { address: None, tx }],
        stop_rx,
    ));

    // Replay the vector frames for 2 s, one cycle every 100 ms, and collect what the host sends.
    let frames = vector_frames();
    let mut keepalives = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        for frame in &frames {
            bms.send(frame).await.expect("send on vcan0");
        }
        if let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_millis(100), bms.recv()).await {
            keepalives.push(frame);
        }
    }
    let battery = rx.borrow_and_update().clone().expect("a reading").result.expect("a complete battery");
    println!("decoded over SocketCAN: {battery:?}");
    assert_eq!(battery.voltage_v, Some(49.86));
    assert_eq!(battery.current_a, Some(-27.0));
    assert_eq!(battery.soc_percent, Some(84.0));
    assert_eq!(battery.soh_percent, Some(96.0));
    assert_eq!(battery.charge_voltage_limit_v, Some(52.8));
    assert_eq!(battery.charge_current_limit_a, Some(480.0));
    assert_eq!(battery.min_cell_voltage_v, Some(3.112));
    assert_eq!(battery.max_cell_voltage_v, Some(3.121));
    assert_eq!(battery.cell_count, Some(16), "49.86 V / 3.1165 V");
    assert_eq!(battery.cell_voltages_v, None);
    assert_eq!(battery.model.as_deref(), Some("PYLON"));
    assert_eq!(battery.full_capacity_ah, Some(572.0));
    assert_eq!(battery.modules_online, Some(6));
    println!("keep-alive frames seen on {interface}: {}", keepalives.len());
    assert!(keepalives.len() >= 5, "{} keep-alive frames in 2 s at 250 ms", keepalives.len());
    assert!(keepalives.iter().all(|f| f.id == 0x35E && f.data == b"BMSBRIDG"), "{keepalives:?}");

    // The BMS falls silent: after the grace period the reading is an error, not frozen values.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let update = rx.borrow_and_update().clone().expect("an update");
    let error = update.result.expect_err("stale after the BMS fell silent");
    println!("after 2 s of silence: {error}");
    assert!(matches!(error, bms_bridge::driver::ReadError::CanSilent { .. }), "{error}");
    assert!(error.to_string().contains("no fresh"), "{error}");
    // The keep-alive goes on while the BMS sleeps (it is what wakes it).
    let frame = tokio::time::timeout(Duration::from_secs(1), bms.recv()).await.expect("keep-alive").unwrap();
    assert_eq!(frame.id, 0x35E);
    stop_tx.send_replace(true);
    driver.await.unwrap();
}

/// Brings up `vcan0` when it is not there (the VM's busybox cannot), and names it.
fn vcan() -> String {
    let interface = std::env::var("BMS_BRIDGE_CAN_IF").unwrap_or_else(|_| "vcan0".to_owned());
    if socketcan::CanInterface::open(&interface).is_err() {
        let created =
            socketcan::CanInterface::create_vcan(&interface, None).expect("create vcan0 (root, vcan.ko)");
        created.bring_up().expect("bring vcan0 up");
    }
    interface
}

/// Daly CAN on a real kernel CAN stack: 29-bit request and reply frames through SocketCAN (the
/// extended-frame flag set by the socket layer), the Daly plan over the CAN bridge, every cell of
/// the simulated pack read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a vcan0 interface: tests/vm/run.sh boots a VM that has one"]
async fn daly_can_polled_on_vcan0() {
    use bms_bridge::config::Protocol;
    let interface = vcan();
    let sim = bms_bridge::bms::daly_can::sim::spawn_on(SocketCanLink::open(&interface).unwrap(), &[1], 16);
    sim.packs.configure_all(|p| p.swing_a = 0.0);
    let mut link =
        bms_bridge::driver::open(Protocol::DalyCan, &interface, 0).await.expect("open over SocketCAN");
    let battery =
        bms_bridge::driver::poll_once(Protocol::DalyCan, &mut link, Some(1), true, Duration::from_secs(1))
            .await
            .expect("a Daly CAN reading over vcan0");
    let pack = sim.packs.get(Some(0x40)).unwrap();
    let want: Vec<f64> = pack.cell_voltages_mv().iter().map(|mv| f64::from(*mv) / 1000.0).collect();
    println!("Daly CAN over SocketCAN: {battery:?}");
    assert_eq!(battery.cell_voltages_v, Some(want));
    assert_eq!(battery.serial.as_deref(), Some("DALY-SIM-40"));
    assert!((battery.voltage_v.unwrap() - pack.voltage_v()).abs() <= 0.051);
    // A pack that is not there: a timeout, no reading.
    let silent = bms_bridge::driver::poll_once(
        Protocol::DalyCan,
        &mut link,
        Some(5),
        false,
        Duration::from_millis(300),
    )
    .await;
    assert!(silent.is_err(), "address 5 has no pack: {silent:?}");
}

/// JK CAN on a real kernel CAN stack: the simulated pack broadcasts 11- and 29-bit frames at DIP
/// address 2, the listener assembles them; silence makes the reading an error, not frozen values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a vcan0 interface: tests/vm/run.sh boots a VM that has one"]
async fn jk_can_listened_on_vcan0() {
    let interface = vcan();
    let sim = bms_bridge::bms::jk_can::sim::spawn_on(SocketCanLink::open(&interface).unwrap(), &[2], 16);
    sim.packs.configure_all(|p| p.swing_a = 0.0);
    let settings = CanSettings {
        interface: interface.clone(),
        voltage_scale_v: 0.01,
        stale_after: Duration::from_millis(1500),
        publish_every: Duration::from_millis(100),
        keepalive: None,
    };
    let (tx, mut rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let name = interface.clone();
    let make = Protocol::JkCan.spec().listener.expect("a listened protocol");
    let listener = make(&settings.listen(vec![(Some(2), None)]));
    let driver = tokio::spawn(run_listener(
        settings,
        listener,
        move || SocketCanLink::open(&name),
        vec![Subscriber { address: Some(2), tx }],
        stop_rx,
    ));
    let pack = sim.packs.get(Some(2)).unwrap();
    let want: Vec<f64> = pack.cell_voltages_mv().iter().map(|mv| f64::from(*mv) / 1000.0).collect();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let battery = loop {
        rx.changed().await.unwrap();
        let update = rx.borrow_and_update().clone().unwrap();
        if let Ok(battery) = update.result {
            break battery;
        }
        assert!(tokio::time::Instant::now() < until, "no JK reading over vcan0");
    };
    println!("JK CAN over SocketCAN: {battery:?}");
    assert_eq!(battery.cell_voltages_v, Some(want));
    assert_eq!(battery.full_capacity_ah, Some(pack.capacity_ah));
    sim.control.set_silent(true);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let error = rx.borrow_and_update().clone().unwrap().result.expect_err("stale after silence");
    println!("after 2 s of silence: {error}");
    assert!(matches!(error, bms_bridge::driver::ReadError::CanSilent { .. }), "{error}");
    assert!(error.to_string().contains("no fresh"), "{error}");
    stop_tx.send_replace(true);
    driver.await.unwrap();
}
