//! `profiling`: CPU, heap and task ("goroutine") profiles, off unless asked for. The original
//! service read these from the environment only; its variables still work.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::PipelineVersion;
use crate::config::key::{Field, Flag, Key, lens};

/// `profiling`: each field's YAML key is its name; its meaning, flag and environment variable
/// are its row in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ProfilingConfig {
    pub capture: bool,
    pub name: String,
    pub dir: PathBuf,
    pub enabled: bool,
    pub addr: String,
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        ProfilingConfig {
            capture: false,
            name: String::new(),
            dir: PathBuf::from("profiles"),
            enabled: false,
            addr: "127.0.0.1:6060".to_owned(),
        }
    }
}

impl ProfilingConfig {
    /// The `<name>` of the captured files: `name`, or `v<version>` when empty.
    pub fn file_name_part(&self, version: PipelineVersion) -> String {
        if self.name.is_empty() {
            format!("v{version}")
        } else {
            self.name.clone()
        }
    }
}

/// `profiling.capture`.
pub const CAPTURE: Key = Key::new(
    "profiling.capture",
    Field::Bool(lens!(profiling.capture)),
    "Profile the whole run and write `cpu_<name>.prof`, `heap_<name>.prof` and \
     `goroutine_<name>.prof` to `profiling.dir` at graceful shutdown. The flag and variable \
     take `1`/`0`, `true`/`false`, `yes`/`no` or `on`/`off`.",
)
.flag(Flag::new("profile-capture", "PROFILE_CAPTURE", "1|0"));

/// `profiling.name`.
pub const NAME: Key = Key::new(
    "profiling.name",
    Field::Text(lens!(profiling.name)),
    "The `<name>` of the captured files (ASCII letters, digits, `.`, `_`, `-`); empty means \
     `v<version>`.",
)
.flag(Flag::new("profile-name", "PROFILE_NAME", "NAME"));

/// `profiling.dir`.
pub const DIR: Key = Key::new(
    "profiling.dir",
    Field::Path(lens!(profiling.dir)),
    "Where captured profiles are written; created at start-up when `profiling.capture` is on.",
)
.flag(Flag::new("profile-dir", "PROFILE_DIR", "PATH"));

/// `profiling.addr`.
pub const ADDR: Key = Key::new(
    "profiling.addr",
    Field::Text(lens!(profiling.addr)),
    "The `/debug/pprof/` listener's address, spelled like `server.addr`. The profiles are \
     unauthenticated, so the default listens on loopback only; `:6060` (all interfaces, the \
     original's default) must be asked for.",
)
.flag(Flag::new("profile-addr", "PROFILE_ADDR", "ADDR"));

pub const KEYS: &[Key] = &[
    CAPTURE,
    NAME,
    DIR,
    Key::new(
        "profiling.enabled",
        Field::Bool(lens!(profiling.enabled)),
        "Serve `/debug/pprof/` (CPU, heap and task profiles on demand) on `profiling.addr`, a \
         listener of its own. The flag and variable take the same values as \
         `profiling.capture`'s.",
    )
    .flag(Flag::new("profile-enabled", "PROFILE_ENABLED", "1|0")),
    ADDR,
];
