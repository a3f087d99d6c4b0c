//! The checkpoint state file, `<logsDir>/.checkpoint.json`: the positions of the last committed
//! checkpointed group, and while a group with positions or keys is being written, its *pending*
//! record (each touched file's length before it). The writer writes it around such a group; the
//! start-up recovery reads it and rolls back what a pending record names (see the store's docs).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Checkpoint;
use super::disk::sync_dir;
use crate::layout::CHECKPOINT_FILE;

/// The checkpoint state file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CheckpointState {
    /// The positions of the last committed checkpointed group.
    pub(super) positions: Checkpoint,
    /// Present while a checkpointed group is being written: each touched file's length before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pending: Option<BTreeMap<String, u64>>,
}

/// The state file's contents; none yet is the empty state.
pub(super) fn read_checkpoint_state(dir: &Path) -> io::Result<CheckpointState> {
    match fs::read(dir.join(CHECKPOINT_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CheckpointState::default()),
        Err(e) => Err(e),
    }
}

/// Writes the state file atomically: temp file, fsync, rename, fsync of the directory.
pub(super) fn write_checkpoint_state(dir: &Path, state: &CheckpointState) -> io::Result<()> {
    let temp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(&serde_json::to_vec(state).map_err(io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&temp, dir.join(CHECKPOINT_FILE))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_replaced_whole_and_none_yet_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = read_checkpoint_state(dir.path()).unwrap();
        assert!(empty.positions.is_empty() && empty.pending.is_none());

        let pending = CheckpointState {
            positions: Checkpoint::from([("logs/0".to_owned(), 7)]),
            pending: Some(BTreeMap::from([("2025-11-22/14.log.json".to_owned(), 42)])),
        };
        write_checkpoint_state(dir.path(), &pending).unwrap();
        let read = read_checkpoint_state(dir.path()).unwrap();
        assert_eq!(read.positions, pending.positions);
        assert_eq!(read.pending, pending.pending);

        let committed = CheckpointState {
            positions: Checkpoint::from([("logs/0".to_owned(), 9)]),
            pending: None,
        };
        write_checkpoint_state(dir.path(), &committed).unwrap();
        let text = fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(
            text, r#"{"positions":{"logs/0":9}}"#,
            "no pending record left"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [CHECKPOINT_FILE], "no temporary file left");
    }

    #[test]
    fn a_damaged_state_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CHECKPOINT_FILE), "{\"positions\":").unwrap();
        let err = read_checkpoint_state(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
