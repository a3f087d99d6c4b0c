//! A small tmpfs mounted for one test: a real filesystem that runs out of space (ENOSPC) when the
//! test says, or that is read-only. Mounting needs root, which is why the tests that use it are in
//! the fault suite (run as root by `make test-faults`, as CI does); without root they fail saying
//! so.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A tmpfs of its own, unmounted (lazily, so that open files do not keep it) when dropped.
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `1m`) on a new temporary directory.
    pub fn mount(size: &str) -> Tmpfs {
        Tmpfs::mount_with(&format!("size={size}"))
    }

    /// Mounts a small read-only tmpfs: a directory nobody can write, root included.
    pub fn read_only() -> Tmpfs {
        Tmpfs::mount_with("size=1m,ro")
    }

    fn mount_with(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temporary mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "this test mounts a tmpfs (disk-full faults) and needs root: mount failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem until about `free` bytes are left (in `.filler*` files).
    pub fn fill_leaving(&self, free: usize) {
        let reserve = self.path().join(".filler-reserve");
        std::fs::write(&reserve, vec![0u8; free]).expect("the reserve fits");
        let mut filler = std::fs::File::create(self.path().join(".filler")).expect("filler file");
        let block = vec![0u8; 4096];
        while filler.write_all(&block).is_ok() {}
        std::fs::remove_file(reserve).expect("free the reserve");
    }

    /// Frees what [`Tmpfs::fill_leaving`] took.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path().join(".filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
