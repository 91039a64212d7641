//! The state file: the only I/O in `control/` (the architecture test allows `std::fs` here only).
//!
//! JSON, written to `<path>.tmp`, flushed to disk, then renamed over `<path>`, so a power cut
//! leaves either the old or the new file, never half of one. Call it when
//! [`super::ChargeController::take_state_to_save`] returns a state: at phase changes and at most
//! every `state_save_interval_s` otherwise, so flash is not worn by every poll.

use super::ControlState;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `state` to `path` atomically (temp file + fsync + rename).
pub fn save_state_file(path: &Path, state: &ControlState) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    let temp = temp_path(path);
    {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)
}

/// Reads the state saved at `path`; `Ok(None)` when there is no file yet.
pub fn load_state_file(path: &Path) -> io::Result<Option<ControlState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Phase;

    #[test]
    fn save_then_load_gives_the_same_state_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("bms-bridge-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("charge-state.json");
        assert!(load_state_file(&path).ok().flatten().is_none());
        let mut state = ControlState::default();
        state.voltage.phase = Phase::Absorption;
        state.voltage.absorption_elapsed_s = Some(123.0);
        state.soc_percent = Some(77.5);
        assert!(save_state_file(&path, &state).is_ok());
        assert_eq!(load_state_file(&path).ok().flatten(), Some(state));
        assert!(!temp_path(&path).exists());
        std::fs::write(&path, b"{ not json").ok();
        assert_eq!(load_state_file(&path).err().map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        std::fs::remove_dir_all(&dir).ok();
    }
}
