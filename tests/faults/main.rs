//! The fault suite (`make test-faults`): the release binary as a child process, tried as a
//! hostile or unlucky world would, with real components (a tansu broker for v2, a small tmpfs for
//! a full disk). Every scenario checks the promise from the outside: every acknowledged record is
//! on disk exactly once, no line is torn or glued, no batch answered "nothing stored" left a line,
//! and the service recovers by itself. Each scenario adds a row to the summary table that
//! `scripts/test-faults.sh` prints (and docs/operations/suites.md shows).
//!
//! - [`crash`]: `kill -9` under load, 10 rounds per mode.
//! - [`sites`]: `kill -9` under load from three customer sites at once, 5 rounds per mode: every
//!   acknowledged record once, under its own site.
//! - [`keyed`]: `kill -9` at random moments while clients retry with their `Idempotency-Key`
//!   until 202, 20 rounds per mode: every batch exactly once.
//! - [`broker`]: the broker paused (SIGSTOP) for 30 s under load.
//! - [`restart`]: the broker killed and started again under load, with its storage kept and lost.
//! - [`disk`]: the disk full under load.
//! - [`analytics`]: readers racing writers across hour boundaries, and one hour of huge distinct
//!   keys (issue 28).
//! - [`hostile`]: the reproductions of issue 9 (silent connections, a batch over many hours, a
//!   batch that outlives its request, bodies that would take the memory, an oversized body sent
//!   whole) and slow or idle clients next to a normal one.
//! - [`squatting`]: clients holding the in-flight budget with slow bodies next to a normal one.
//!
//! And the scenarios of the API that need root (a tmpfs mount, `chattr`), kept out of `make test`
//! so that it runs as any user; they add no summary row:
//! - [`rollback`]: a rollback that fails (full disk, append-only file): 500 `outcome_unknown`,
//!   then the store repairs itself.
//! - [`read_only`]: read-only directories refused at start-up, naming their key.

// The harness is shared with the API tests; this suite uses part of it.
#[allow(dead_code, unused_imports)]
#[path = "../api/support/mod.rs"]
mod support;

mod load;
mod summary;
mod tmpfs;

mod analytics;
mod broker;
mod crash;
mod disk;
mod hostile;
mod keyed;
mod read_only;
mod restart;
mod rollback;
mod sites;
mod squatting;
