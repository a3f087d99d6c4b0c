//! Heap profiles: jemalloc's sampling profiler, read through `jemalloc_pprof`.
//!
//! jemalloc starts with `prof:true,prof_active:false` (the `malloc_conf` symbol in `main.rs`):
//! profiling is compiled in and ready, sampling is off. [`activate`] switches sampling on; from
//! then on about one allocation per 512 KiB allocated (`lg_prof_sample:19`, Go's default rate)
//! records its stack, and [`dump_pprof`] reports the sampled allocations that are still live,
//! scaled to estimated bytes (`inuse_space`), as a gzipped, symbolized pprof protobuf.

/// Heap profiles cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    #[error(
        "heap profiling is unavailable: jemalloc did not start with prof:true (a MALLOC_CONF \
         environment variable with prof:false overrides the built-in setting)"
    )]
    Unavailable,
    #[error("cannot activate jemalloc heap sampling: {0}")]
    Activate(String),
    #[error("cannot dump the heap profile: {0:#}")]
    Dump(anyhow::Error),
}

/// Switches jemalloc's heap sampling on (idempotent). Do not call from an async task while
/// [`dump_pprof`] may run: both take the same lock.
pub fn activate() -> Result<(), HeapError> {
    let ctl = jemalloc_pprof::PROF_CTL
        .as_ref()
        .ok_or(HeapError::Unavailable)?;
    let mut ctl = ctl.blocking_lock();
    if !ctl.activated() {
        ctl.activate()
            .map_err(|err| HeapError::Activate(err.to_string()))?;
        tracing::info!(
            sample_interval_bytes = 1u64 << ctl.lg_sample(),
            "jemalloc heap sampling activated"
        );
    }
    Ok(())
}

/// The live sampled allocations as a gzipped pprof protobuf (the format of Go's
/// `/debug/pprof/heap`). Blocking (a dump file, symbolization): call it off the async workers.
pub fn dump_pprof() -> Result<Vec<u8>, HeapError> {
    let ctl = jemalloc_pprof::PROF_CTL
        .as_ref()
        .ok_or(HeapError::Unavailable)?;
    let mut ctl = ctl.blocking_lock();
    if !ctl.activated() {
        return Err(HeapError::Activate(
            "sampling was never activated".to_owned(),
        ));
    }
    ctl.dump_pprof().map_err(HeapError::Dump)
}
