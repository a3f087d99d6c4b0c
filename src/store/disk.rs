//! The file operations the rest of the store builds on: writing slices in full, cutting a file
//! back to a length or to its last complete line and fsyncing it on a fresh descriptor, and
//! fsyncing a directory. Both the writer (after a failed group) and the start-up recovery cut
//! files back through here.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The length of the longest prefix of the file that ends with a newline (0 if none).
pub(super) fn complete_prefix(file: &mut File, length: u64) -> io::Result<u64> {
    let mut end = length;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let window = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(newline) = window.iter().rposition(|&b| b == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// fsyncs a directory, so that the entries just created or renamed in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Truncates `path` to `length` and fsyncs it, through a descriptor of its own, opened without
/// ever blocking (a special file in place of an hour file must not hang the writer).
pub(super) fn truncate_and_sync(path: &Path, length: u64) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if file.metadata()?.len() > length {
        file.set_len(length)?;
    }
    file.sync_all()
}

/// Repairs a damaged hour file on fresh descriptors: back to `length` if that is known and
/// possible, else (e.g. the file is append-only) at least cut to its last complete line, since a
/// torn tail must go before anything is appended; then fsync. Returns how many bytes were removed.
pub(super) fn repair_file(path: &Path, length: Option<u64>) -> io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let current = file.metadata()?.len();
    if let Some(length) = length.filter(|length| *length < current)
        && truncate_and_sync(path, length).is_ok()
    {
        return Ok(current - length);
    }
    let keep = complete_prefix(&mut file, current)?;
    if keep < current {
        truncate_and_sync(path, keep)?;
    } else {
        // fsync needs no write access: the file is whole, make that durable.
        file.sync_all()?;
    }
    Ok(current - keep)
}

/// Writes every slice in order. On failure returns how many bytes did reach the file.
pub(super) fn write_all_vectored(
    file: &mut File,
    slices: &mut [IoSlice<'_>],
) -> Result<usize, (usize, io::Error)> {
    let mut remaining = slices;
    let mut written = 0;
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut remaining, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn repair_cuts_a_torn_tail_or_goes_back_to_the_known_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "one\ntwo\nthr").unwrap();
        assert_eq!(repair_file(&path, None).unwrap(), 3);
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert_eq!(repair_file(&path, Some(4)).unwrap(), 4);
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\n");
        assert_eq!(repair_file(&path, None).unwrap(), 0, "a whole file stays");
        assert_eq!(repair_file(&dir.path().join("missing"), None).unwrap(), 0);
    }

    #[test]
    fn complete_prefix_scans_back_across_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut content = b"first\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 200 * 1024));
        fs::write(&path, &content).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(complete_prefix(&mut file, content.len() as u64).unwrap(), 6);
    }
}
