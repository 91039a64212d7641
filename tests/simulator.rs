//! The simulators behave like the real BMS on the wire: garbage and malformed requests are
//! skipped, a valid request after them is answered, a silent simulator answers nothing.

use bms_bridge::bms::jbd::codec as jbd;
use bms_bridge::config::Protocol;
use bms_bridge::protocol::find_frame;
use bms_bridge::sim;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn exchange(path: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    let mut port =
        tokio_serial::SerialStream::open(&tokio_serial::new(path.to_string_lossy(), 9600)).unwrap();
    port.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 256];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), port.read(&mut chunk)).await {
        reply.extend_from_slice(&chunk[..n]);
        if find_frame(&reply, jbd::scan).is_some() {
            break;
        }
    }
    reply
}

#[tokio::test]
async fn jbd_simulator_skips_garbage_and_answers_the_next_request() {
    let simulator = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    let mut bytes = vec![0x00, 0xFF, 0xDD, 0x12, 0x77];
    // A request with a broken checksum gets no answer ...
    bytes.extend_from_slice(&[0xDD, 0xA5, 0x04, 0x00, 0xFF, 0x00, 0x77]);
    // ... the valid one after it does.
    bytes.extend_from_slice(&jbd::request_read(jbd::REG_CELLS));
    let reply = exchange(simulator.path(), &bytes).await;
    let (frame, _) = find_frame(&reply, jbd::scan).expect("a reply frame");
    let decoded = jbd::decode(frame).unwrap();
    assert_eq!(decoded.battery.cell_voltages_v.map(|c| c.len()), Some(16));
    assert_eq!(simulator.control().requests(), 1, "only the valid request was answered");

    simulator.control().set_silent(true);
    let reply = exchange(simulator.path(), &jbd::request_read(jbd::REG_BASIC_INFO)).await;
    assert!(reply.is_empty(), "a silent BMS sends nothing");
}
