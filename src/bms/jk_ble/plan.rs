//! JK BLE poll: device info (0x97: identity, and the firmware that picks the cell-info layout),
//! then cell info (0x96: the settings frame, then a cell-info frame). Frames of another type
//! that arrive in between (the BMS streams cell info once both commands were sent) are passed
//! over, up to [`MAX_FRAMES`] per request.

use super::codec::{self as jk_ble, Layout};
use crate::battery::Battery;
use crate::bms::plan::{Next, PollError, PollPlan, PollTarget, Reply, Request};
use crate::protocol::FrameError;

/// Frames read for one request before giving up on the one asked for.
pub const MAX_FRAMES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    DeviceInfo,
    CellInfo,
    Done,
}

/// One JK BLE poll.
#[derive(Debug)]
pub struct JkBlePlan {
    stage: Stage,
    layout: Layout,
    more: bool,
    frames: usize,
    battery: Battery,
    error: Option<PollError>,
}

/// The plan of one JK BLE poll.
pub fn plan(_: PollTarget<'_>) -> Box<dyn PollPlan> {
    Box::new(JkBlePlan {
        stage: Stage::DeviceInfo,
        layout: Layout::Jk02_32s,
        more: false,
        frames: 0,
        battery: Battery::default(),
        error: None,
    })
}

impl JkBlePlan {
    fn expected(&self) -> u8 {
        match self.stage {
            Stage::DeviceInfo => jk_ble::TYPE_DEVICE_INFO,
            Stage::CellInfo | Stage::Done => jk_ble::TYPE_CELL_INFO,
        }
    }

    fn take(&mut self, frame: &[u8]) -> Result<(), FrameError> {
        let found = jk_ble::frame_type(frame).unwrap_or_default();
        match (self.stage, found) {
            (Stage::DeviceInfo, jk_ble::TYPE_DEVICE_INFO) => {
                let info = jk_ble::decode_frame(frame, self.layout)?.battery;
                self.layout = Layout::of(&info);
                self.battery.merge(&info);
                self.stage = Stage::CellInfo;
                self.more = false;
                self.frames = 0;
            }
            (Stage::CellInfo, jk_ble::TYPE_SETTINGS) => {
                self.battery.merge(&jk_ble::decode_frame(frame, self.layout)?.battery);
                self.more = true;
            }
            (Stage::CellInfo, jk_ble::TYPE_CELL_INFO) => {
                self.battery.merge(&jk_ble::decode_frame(frame, self.layout)?.battery);
                self.stage = Stage::Done;
            }
            _ => self.more = true,
        }
        if self.more && self.frames >= MAX_FRAMES {
            return Err(FrameError::UnexpectedCommand { expected: self.expected(), found });
        }
        Ok(())
    }
}

impl PollPlan for JkBlePlan {
    fn next(&mut self) -> Next {
        if let Some(error) = self.error.take() {
            return Next::Done(Err(error));
        }
        let command = match self.stage {
            Stage::DeviceInfo => jk_ble::CMD_DEVICE_INFO,
            Stage::CellInfo => jk_ble::CMD_CELL_INFO,
            Stage::Done => return Next::Done(Ok(Box::new(std::mem::take(&mut self.battery)))),
        };
        Next::Send(if self.more {
            Request::MoreFrames { scan: jk_ble::scan }
        } else {
            Request::Frame { bytes: jk_ble::command(command), scan: jk_ble::scan }
        })
    }

    fn handle(&mut self, reply: Result<Reply, PollError>) {
        self.frames += 1;
        let taken = reply.and_then(|reply| Ok(self.take(reply.frame()?)?));
        if let Err(error) = taken {
            self.error = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bms::jk_pb::codec::{About, Settings, Status};

    fn run(plan: &mut dyn PollPlan, mut frames: Vec<Vec<u8>>) -> Result<Box<Battery>, PollError> {
        frames.reverse();
        loop {
            match plan.next() {
                Next::Send(_) => plan.handle(frames.pop().map(Reply::Frame).ok_or_else(|| {
                    PollError::Link(crate::transport::LinkError::Timeout {
                        waited: Default::default(),
                        received: 0,
                    })
                })),
                Next::Skipped { .. } => {}
                Next::Done(result) => return result,
            }
        }
    }

    fn about(software: &str) -> Vec<u8> {
        About {
            vendor: "JK_B2A24S15P".into(),
            hardware: "11.XW".into(),
            software: software.into(),
            serial: "S1".into(),
        }
        .encode()
    }

    #[test]
    fn device_info_then_settings_then_cells() {
        let status =
            Status { cells_mv: vec![3300; 8], voltage_mv: 26_400, full_mah: 100_000, ..Status::default() }
                .encode();
        let settings = Settings { cells: 8, charge_ocp_ma: 70_000, ..Settings::default() }.encode();
        // A stray cell-info frame before the device info is passed over.
        let frames = vec![status.clone(), about("11.26"), settings, status];
        let battery = run(plan(PollTarget { addresses: &[], need_identity: true }).as_mut(), frames).unwrap();
        assert_eq!(battery.firmware_version.as_deref(), Some("11.26"));
        assert_eq!(battery.voltage_v, Some(26.4));
        assert_eq!(battery.cell_count, Some(8));
        assert_eq!(battery.nominal_capacity_ah, Some(100.0));
        assert_eq!(battery.charge_current_limit_a, Some(70.0), "from the settings frame");
    }

    #[test]
    fn a_missing_cell_info_frame_ends_the_poll_with_an_error() {
        let settings = Settings { cells: 8, ..Settings::default() }.encode();
        let frames = vec![about("11.26"), settings.clone(), settings.clone(), settings.clone(), settings];
        assert!(run(plan(PollTarget { addresses: &[], need_identity: true }).as_mut(), frames).is_err());
    }
}
