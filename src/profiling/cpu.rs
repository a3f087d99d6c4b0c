//! CPU profiles: pprof-rs samples the stack of whichever thread is on a CPU, on SIGPROF from a
//! process-wide `ITIMER_PROF` timer at [`FREQUENCY_HZ`], and symbolizes the samples when a profile
//! is read. One profiler per process: a second [`CpuProfile::start`] while one runs is
//! [`CpuError::Busy`].

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;
use pprof::protos::Message as _;
use pprof::{ProfilerGuard, ProfilerGuardBuilder};

/// Samples per second of CPU time, as Go's runtime/pprof (100 Hz) but prime, so the sampling does
/// not beat in step with periodic work.
pub const FREQUENCY_HZ: i32 = 99;

/// Samples whose innermost frame lies in these libraries are dropped: unwinding from inside them
/// can deadlock in `_Unwind_Backtrace`, and the vDSO's unwind tables are unreliable (pprof-rs's
/// documented advice).
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// A CPU profile cannot be taken or read.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error(
        "the CPU profiler is already running (another CPU profile or flamegraph, or the \
         whole-run capture of PROFILE_CAPTURE=1); one at a time"
    )]
    Busy,
    #[error("CPU profiler: {0}")]
    Profiler(pprof::Error),
    #[error("cannot compress the CPU profile: {0}")]
    Compress(std::io::Error),
}

impl From<pprof::Error> for CpuError {
    fn from(err: pprof::Error) -> Self {
        match err {
            pprof::Error::Running => CpuError::Busy,
            err => CpuError::Profiler(err),
        }
    }
}

/// A running CPU profiler; sampling stops when it is dropped.
pub struct CpuProfile {
    guard: ProfilerGuard<'static>,
}

impl CpuProfile {
    /// Installs the SIGPROF handler and starts the timer.
    pub fn start() -> Result<CpuProfile, CpuError> {
        let guard = ProfilerGuardBuilder::default()
            .frequency(FREQUENCY_HZ)
            .blocklist(BLOCKLIST)
            .build()?;
        Ok(CpuProfile { guard })
    }

    /// The samples so far as a gzipped pprof protobuf (what Go's `/debug/pprof/profile` serves and
    /// `go tool pprof` reads). Symbolizes every sampled address: CPU-heavy, call it off the async
    /// workers.
    pub fn pprof(&self) -> Result<Vec<u8>, CpuError> {
        let profile = self.guard.report().build()?.pprof()?;
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(&profile.encode_to_vec())
            .map_err(CpuError::Compress)?;
        gzip.finish().map_err(CpuError::Compress)
    }

    /// The samples so far as an SVG flamegraph. CPU-heavy like [`CpuProfile::pprof`].
    pub fn flamegraph(&self) -> Result<Vec<u8>, CpuError> {
        let mut svg = Vec::new();
        self.guard.report().build()?.flamegraph(&mut svg)?;
        if svg.is_empty() {
            // pprof-rs writes nothing when there is no sample: still answer with an image.
            svg = NO_SAMPLES_SVG.as_bytes().to_vec();
        }
        Ok(svg)
    }
}

/// The flamegraph of a profile without a sample: the process used no CPU while it ran.
const NO_SAMPLES_SVG: &str = r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg">
<text x="600" y="34" text-anchor="middle" font-family="Verdana" font-size="16">No CPU samples: the service was idle while it was profiled</text>
</svg>
"#;
