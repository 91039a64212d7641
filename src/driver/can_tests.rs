//! The listener loop, and the Victron dialect's listener it runs (`bms::victron_can::listen`).

use super::*;
use crate::battery::Battery;
use crate::bms::victron_can::codec::{self as vc, encode, Options};
use crate::bms::victron_can::listen::Assembler;
use crate::protocol::MissingFrames;
use crate::transport::can::MemoryCanBus;

fn settings() -> CanSettings {
    CanSettings {
        interface: "mem0".into(),
        voltage_scale_v: 0.01,
        stale_after: Duration::from_millis(600),
        publish_every: Duration::from_millis(50),
        keepalive: Some((CanFrame { id: 0x35E, data: b"BMSBRIDG".to_vec() }, Duration::from_millis(100))),
    }
}

/// The listener's view of `settings`, and its decoding options.
fn listen(s: &CanSettings, cells: Option<u16>) -> (ListenSettings, Options) {
    (s.listen(vec![(None, cells)]), Options { voltage_scale_v: s.voltage_scale_v })
}

fn pack() -> Battery {
    Battery {
        voltage_v: Some(52.96),
        current_a: Some(-5.0),
        soc_percent: Some(70.0),
        soh_percent: Some(98.0),
        min_cell_voltage_v: Some(3.305),
        max_cell_voltage_v: Some(3.315),
        temperatures_c: Some(vec![20.0, 22.0]),
        charge_voltage_limit_v: Some(56.0),
        charge_current_limit_a: Some(50.0),
        discharge_current_limit_a: Some(100.0),
        discharge_voltage_limit_v: Some(46.4),
        ..Battery::default()
    }
}

fn frame(id: u32, b: &Battery) -> CanFrame {
    CanFrame { id, data: encode::frame(id, b).unwrap() }
}

#[test]
fn complete_only_with_the_essential_frames_and_then_cell_count_derived() {
    let (s, o) = listen(&settings(), None);
    let t0 = Instant::now();
    let mut a = Assembler::default();
    a.feed(t0, vc::LIMITS, &frame(vc::LIMITS, &pack()).data, &o).unwrap();
    a.feed(t0, vc::SOC, &frame(vc::SOC, &pack()).data, &o).unwrap();
    let err = a.reading(t0, &s).unwrap_err();
    assert!(missing(&err).contains(&"0x356".to_owned()), "{err}");
    a.feed(t0 + Duration::from_millis(10), vc::MEASUREMENTS, &frame(vc::MEASUREMENTS, &pack()).data, &o)
        .unwrap();
    let b = a.reading(t0 + Duration::from_millis(20), &s).unwrap();
    assert_eq!(b.voltage_v, Some(52.96));
    assert_eq!(b.cell_count, None, "no cell min/max yet: no cell count");
    a.feed(t0 + Duration::from_millis(30), vc::CELLS, &frame(vc::CELLS, &pack()).data, &o).unwrap();
    let b = a.reading(t0 + Duration::from_millis(40), &s).unwrap();
    assert_eq!(b.cell_count, Some(16));
    assert_eq!(b.min_cell_voltage_v, Some(3.305));
    assert_eq!(b.cell_voltages_v, None, "never per-cell values");
    assert_eq!(b.read_at, Some(t0), "the time of the oldest essential frame");
}

#[test]
fn stale_frames_make_the_reading_fail_and_cells_stay_essential() {
    let (s, o) = listen(&settings(), None);
    let t0 = Instant::now();
    let mut a = Assembler::default();
    for id in [vc::LIMITS, vc::SOC, vc::MEASUREMENTS, vc::CELLS, vc::MANUFACTURER] {
        a.feed(t0, id, &frame(id, &pack()).data, &o).unwrap();
    }
    assert!(a.reading(t0, &s).is_ok());
    let later = t0 + Duration::from_millis(700);
    for id in [vc::LIMITS, vc::SOC, vc::MEASUREMENTS] {
        a.feed(later, id, &frame(id, &pack()).data, &o).unwrap();
    }
    let err = a.reading(later, &s).unwrap_err();
    assert!(
        missing(&err).contains(&"0x373".to_owned()),
        "the BMS sent cells before: they are required: {err}"
    );
    let err = a.reading(later + Duration::from_secs(1), &s).unwrap_err();
    assert!(missing(&err).contains(&"0x351".to_owned()), "{err}");
}

#[test]
fn configured_cell_count_and_voltage_scale_win() {
    let mut can = settings();
    can.voltage_scale_v = 0.1;
    let (s, o) = listen(&can, Some(15));
    let t0 = Instant::now();
    let mut a = Assembler::default();
    let discover = CanFrame { id: vc::MEASUREMENTS, data: vec![0x0A, 0x02, 0x11, 0xFF, 0xBE, 0, 0, 0] };
    for f in [frame(vc::LIMITS, &pack()), frame(vc::SOC, &pack()), discover] {
        a.feed(t0, f.id, &f.data, &o).unwrap();
    }
    let b = a.reading(t0, &s).unwrap();
    assert_eq!(b.voltage_v, Some(52.2));
    assert_eq!(b.cell_count, Some(15));
}

#[tokio::test]
async fn the_loop_publishes_sends_keepalives_and_goes_stale() {
    let bus = MemoryCanBus::new();
    let mut bms = bus.connect();
    let (tx, mut rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let opener = bus.clone();
    let s = settings();
    let listener = crate::bms::victron_can::listen::listener(&s.listen(vec![(None, None)]));
    let task = tokio::spawn(run_listener(
        s,
        listener,
        move || Ok(opener.connect()),
        vec![Subscriber { address: None, tx }],
        stop_rx,
    ));
    let mut keepalives = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
    while tokio::time::Instant::now() < deadline {
        for id in [vc::LIMITS, vc::SOC, vc::MEASUREMENTS, vc::CELLS] {
            bms.send(&frame(id, &pack())).await.unwrap();
        }
        if let Ok(Ok(f)) = tokio::time::timeout(Duration::from_millis(40), bms.recv()).await {
            assert_eq!((f.id, f.data.as_slice()), (0x35E, &b"BMSBRIDG"[..]));
            keepalives += 1;
        }
    }
    assert!(keepalives >= 2, "{keepalives} keep-alive frames in 400 ms at 100 ms");
    rx.changed().await.unwrap();
    let update = rx.borrow_and_update().clone().unwrap();
    let battery = update.result.unwrap();
    assert_eq!(battery.cell_count, Some(16));
    assert_eq!(battery.soc_percent, Some(70.0));
    // The BMS falls silent: within the grace period the reading turns into an error.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let update = rx.borrow_and_update().clone().unwrap();
    let error = update.result.unwrap_err();
    assert!(matches!(&error, crate::driver::ReadError::CanSilent { address: None, .. }), "{error}");
    assert!(error.to_string().contains("no fresh"), "{error}");
    stop_tx.send_replace(true);
    task.await.unwrap();
}

/// The frames a reading lacks.
fn missing(err: &MissingFrames) -> Vec<String> {
    err.frames.clone()
}

#[test]
fn a_voltage_on_another_scale_is_noticed_once() {
    // Discover's 0x356 in 0.1 V read at the default 0.01 V: 5.22 V against a 56 V limit.
    let (s, o) = listen(&settings(), None);
    let t0 = Instant::now();
    let mut listener = crate::bms::victron_can::listen::listener(&s);
    let discover = CanFrame { id: vc::MEASUREMENTS, data: vec![0x0A, 0x02, 0x11, 0xFF, 0xBE, 0, 0, 0] };
    for f in [frame(vc::LIMITS, &pack()), frame(vc::SOC, &pack()), discover] {
        listener.feed(t0, f.id, &f.data).unwrap();
    }
    assert_eq!(o.voltage_scale_v, 0.01);
    assert_eq!(listener.reading(t0, None).unwrap().voltage_v, Some(5.22));
    let notice = listener.take_notice().expect("a notice");
    assert!(notice.contains("can_voltage_scale = 0.1"), "{notice}");
    listener.reading(t0, None).unwrap();
    assert_eq!(listener.take_notice(), None, "said once");
}
