//! log-pipeline ingests batches of web-access records over HTTP, stores them durably in hourly
//! NDJSON files, keeps hourly analytics up to date and exposes Prometheus metrics.
//!
//! # Layout
//!
//! Modules are listed in layers, from the entry points down to the pure domain and the leaves;
//! each imports only modules listed below it (checked by `tests::modules_import_only_downwards`).
//! Requests flow top to bottom.
//!
//! - [`app`]: builds every component from a [`config::Config`], binds the listener and runs until a
//!   shutdown signal, then drains in order.
//! - [`ship`]: `log-pipeline ship`, which copies the hour files to the bucket (v1 on several
//!   machines), named by byte range; nothing shipped twice, no local state.
//! - [`profiling`]: CPU, heap and task-dump profiles, off unless `profiling.*` (or the original's
//!   `PROFILE_*` variables) ask for them (whole-run capture, or a separate `/debug/pprof/`
//!   listener).
//! - [`server`]: connections: the cap, timeouts for silent and idle ones, draining at shutdown.
//! - [`http`]: the axum router, handlers, middleware (auth, metrics, timeouts) and the one
//!   [`http::ApiError`] type that maps failures (and the pipeline's refusal kinds) onto status
//!   codes and JSON bodies; the analytics routes (never stale, bounded) and the dashboard's
//!   embedded page. The router is built over an [`pipeline::Intake`] trait object, so its tests
//!   run in process with a stand-in pipeline.
//! - [`pipeline`]: where accepted batches go; one value owns each mode (v1: the store; v2: Kafka)
//!   from start-up to shutdown. [`pipeline::Intake`] is all the HTTP layer asks of it, and
//!   [`pipeline::Refusal`] what a refused batch means for the client (each backend's errors are
//!   mapped to it once, in `pipeline/refusal.rs`).
//! - [`storage`]: where records are stored, decided once from `storage.backend`: the store (the
//!   hour files) or the bucket client, the consumers' sink, the analytics' source and the ingest
//!   figures, each used afterwards through one interface.
//! - [`kafka`]: v2, owned by [`kafka::KafkaPipeline`]: producer, consumer group (writing through
//!   a [`kafka::Sink`], which knows the backend; dead-letter topic), broker set-up and probe.
//! - [`analytics`]: incremental hourly summaries of what is stored, read through one
//!   [`analytics::Source`] (the hour files, or the bucket's objects), bots and humans split with
//!   the vendored isbot list, and the analytics API's bounded queries; shares no locks with the
//!   writers.
//! - [`objects`]: the bucket of `storage.backend: s3` (v2 on several machines): ranges of offsets
//!   written as objects whose names their messages fix, after an intent; exactly once with no
//!   local state.
//! - [`store`]: the durable hourly file store: group commit, fsync, rollback, torn-line repair,
//!   directory lock, caller checkpoints and the idempotency journal.
//! - [`ingest`]: decoding and validation of request bodies (JSON array, CSV, NDJSON) into an
//!   [`record::EncodedBatch`]; pure functions, no I/O.
//! - [`idempotency`]: what an `Idempotency-Key` means: keys, batch fingerprints, the ledger of
//!   keyed batches stored (asked by intent, not handed out) and the API's index of keys done and
//!   in flight; no I/O.
//! - [`layout`]: which file of the logs and analytics directories (and which object of the
//!   bucket) holds which hour.
//! - [`record`]: the record type and its NDJSON line format (the compatibility contract).
//! - [`access`]: who a bearer key is ([`access::Role`]: the operator, or a site's ingest or read
//!   key), which role may use which group of routes ([`access::Access::admit`]), and the set of
//!   keys in force, replaced whole at a reload of the sites file ([`access::Reloader`]).
//! - [`cli`]: the command line: subcommands and the override flags, built from the configuration's
//!   key table into a [`config::Overrides`] value.
//! - [`config`]: the typed configuration tree (YAML + flags + env), one table of keys (name,
//!   default, range, flag, env var, meaning), validated once at start-up, and the sites file;
//!   imports only [`site`].
//! - [`metrics`]: every metric name, label and help text.
//! - [`telemetry`]: structured JSON logs.
//! - [`site`]: a customer site's id, the one spelling every layer shares; a leaf.

// The code's documentation is read with its private items (`make doc`): links from public
// items to private ones are how a reader finds where a behaviour lives.
#![allow(rustdoc::private_intra_doc_links)]

pub mod access;
pub mod analytics;
pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod idempotency;
pub mod ingest;
pub mod kafka;
pub mod layout;
pub mod metrics;
pub mod objects;
pub mod pipeline;
pub mod profiling;
pub mod record;
pub mod server;
pub mod ship;
pub mod site;
pub mod storage;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs;
    use std::path::{Path, PathBuf};

    use regex::Regex;

    /// Imports that still reach up, each as (module, module it imports): none is added here; the
    /// change that removes one removes its entry.
    const KNOWN_UPWARD: &[(&str, &str)] = &[];

    fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }

    /// The modules in the order the crate docs' Layout lists them, top layer first.
    fn layout_order(lib: &str) -> Vec<String> {
        let layout = &lib[lib.find("# Layout").unwrap()..lib.find("\npub mod ").unwrap()];
        let bullet = Regex::new(r"(?m)^//! - ([^:]*):").unwrap();
        let name = Regex::new(r"\[`(\w+)`\]").unwrap();
        bullet
            .captures_iter(layout)
            .flat_map(|head| {
                name.captures_iter(head.get(1).unwrap().as_str())
                    .map(|module| module[1].to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn modules_import_only_downwards() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
        let order = layout_order(&lib);
        let declared: BTreeSet<String> = Regex::new(r"(?m)^pub mod (\w+);")
            .unwrap()
            .captures_iter(&lib)
            .map(|module| module[1].to_owned())
            .collect();
        assert_eq!(
            order.iter().cloned().collect::<BTreeSet<_>>(),
            declared,
            "the Layout lists every module"
        );
        assert_eq!(order.len(), declared.len(), "the Layout lists each once");

        let import = Regex::new(r"crate::(\w+)").unwrap();
        let (mut upward, mut known) = (BTreeSet::new(), BTreeSet::new());
        for (rank, module) in order.iter().enumerate() {
            let mut files = vec![src.join(format!("{module}.rs"))];
            rust_files(&src.join(module), &mut files);
            for file in files {
                let text = fs::read_to_string(&file).unwrap();
                let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
                for used in code.flat_map(|line| import.captures_iter(line)) {
                    let used = &used[1];
                    let Some(at) = order.iter().position(|m| m == used) else {
                        continue;
                    };
                    if at >= rank {
                        continue;
                    }
                    if KNOWN_UPWARD.contains(&(module.as_str(), used)) {
                        known.insert((module.as_str(), used.to_owned()));
                    } else {
                        upward.insert(format!("{module} imports {used} ({})", file.display()));
                    }
                }
            }
        }
        assert!(
            upward.is_empty(),
            "imports that reach up (import the other way, or list the module lower in the Layout): {upward:#?}"
        );
        for (module, used) in KNOWN_UPWARD {
            assert!(
                known.contains(&(*module, (*used).to_owned())),
                "{module} no longer imports {used}: remove it from KNOWN_UPWARD"
            );
        }
    }
}
