//! Simulated plain-Modbus BMSes: a real tokio-modbus RTU server ([`tokio_modbus::server::rtu`])
//! answering FC03 for every simulated slave id from a register map built from the packs.
//!
//! The server runs on an inner pty pair; a relay between the outer pty (the daemon's side) and
//! the server forwards only CRC-valid FC03/FC16 requests, so the garbage another protocol's probe
//! sends cannot make the server give up, and the `silent` knob can swallow requests.

use super::{Packs, SimControl};
use crate::protocol::modbus;
use crate::protocol::Scan;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_serial::SerialStream;

/// Builds the register map of one pack: (first register, registers).
pub type RegisterMap = fn(address: u8, pack: &super::model::SimPack, control: &SimControl) -> (u16, Vec<u16>);

struct Registers {
    packs: Packs,
    control: Arc<SimControl>,
    map: RegisterMap,
}

impl tokio_modbus::server::Service for Registers {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let Request::ReadHoldingRegisters(start, count) = req.request else {
            return ready(Ok(None));
        };
        let slave = req.slave;
        let map = self.map;
        let found = self
            .packs
            .with(Some(slave), &self.control, Instant::now(), |pack| map(slave, pack, &self.control));
        let Some((first, registers)) = found else {
            return ready(Ok(None)); // not our address: a real bus stays silent
        };
        let from = usize::from(start.wrapping_sub(first));
        let window = (start >= first).then(|| registers.get(from..from + usize::from(count))).flatten();
        ready(match window {
            Some(values) => Ok(Some(Response::ReadHoldingRegisters(values.to_vec()))),
            None => Err(ExceptionCode::IllegalDataAddress),
        })
    }
}

/// Serves `outer` until it closes: a tokio-modbus server behind a request-filtering relay.
pub async fn serve(outer: SerialStream, packs: Packs, control: Arc<SimControl>, map: RegisterMap) {
    let Ok((server_side, relay_side)) = SerialStream::pair() else { return };
    let others: Vec<u8> = packs.lock().iter().filter_map(|(a, _)| *a).collect();
    let service = Registers { packs, control: Arc::clone(&control), map };
    let server = tokio_modbus::server::rtu::Server::new(server_side);
    tokio::select! {
        _ = server.serve_forever(service) => {}
        _ = relay(outer, relay_side, control, others) => {}
    }
}

/// Cross-talk: the request re-addressed to the next address of `others` (with a new CRC), so that
/// another pack answers it.
fn readdress(request: &[u8], others: &[u8]) -> Vec<u8> {
    let (Some(&from), Some(body)) =
        (request.first(), request.len().checked_sub(2).and_then(|n| request.get(..n)))
    else {
        return request.to_vec();
    };
    let to = others.iter().copied().cycle().skip_while(|&a| a != from).nth(1).unwrap_or(from);
    let mut out = body.to_vec();
    if let Some(first) = out.first_mut() {
        *first = to;
    }
    let crc = crate::protocol::checksum::crc16_modbus(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

async fn relay(outer: SerialStream, inner: SerialStream, control: Arc<SimControl>, others: Vec<u8>) {
    let (mut outer_rx, mut outer_tx) = tokio::io::split(outer);
    let (mut inner_rx, mut inner_tx) = tokio::io::split(inner);
    let mut buf = Vec::with_capacity(256);
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    loop {
        tokio::select! {
            read = outer_rx.read(&mut a) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                buf.extend_from_slice(a.get(..n).unwrap_or_default());
                while let Some(len) = next_request(&mut buf) {
                    let request: Vec<u8> = buf.drain(..len).collect();
                    if control.is_silent() {
                        continue;
                    }
                    control.count_request();
                    let request = if control.cross_talk() { readdress(&request, &others) } else { request };
                    if inner_tx.write_all(&request).await.is_err() {
                        return;
                    }
                }
            }
            read = inner_rx.read(&mut b) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                let reply = control.shape_reply(b.get(..n).unwrap_or_default().to_vec()).await;
                if outer_tx.write_all(&reply).await.is_err() {
                    return;
                }
                control.mark_sent();
                if control.delay_ms() > 0 {
                    // A busy half-duplex device ignores what it received while answering.
                    buf.clear();
                    if super::drop_pending(&mut outer_rx).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Drops garbage at the front of `buf`; the length of a complete request there, if any.
fn next_request(buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        match modbus::scan_request(buf) {
            Scan::Frame { len } => return Some(len),
            Scan::Garbage { skip } => {
                buf.drain(..skip.clamp(1, buf.len()));
            }
            Scan::Incomplete => {
                if buf.len() > 512 {
                    buf.clear();
                }
                return None;
            }
        }
    }
}
