//! The shared test harness, by job. Test modules `use crate::support::*`.
//!
//! - [`app`]: the service in this process ([`spawn_app`]).
//! - [`child`]: the real binary as a child process ([`ChildGuard`]).
//! - [`http`]: requests ([`try_send`]), answer checks, metric scraping, a raw HTTP/1 client.
//! - [`records`]: record builders and bodies; hour files read back from disk.
//! - [`wait`]: polling with deadlines.
//! - [`squatters`]: clients that hold a budget without using it ([`SlowBody`]).
//! - [`racing`]: readers racing writers across hour boundaries, for the analytics' promises.
//! - [`kafka`]: the Kafka tests' names, batches and exact storage checks.
//! - [`external`]: the broker and programs the tests need; missing ones fail the test.
//! - [`browser`]: the dashboard in a real browser, as a person sees it.

mod app;
mod browser;
mod child;
mod external;
mod http;
mod kafka;
mod racing;
mod records;
mod sites;
mod squatters;
mod wait;

pub use app::*;
pub use browser::*;
pub use child::*;
pub use external::*;
pub use http::*;
pub use kafka::*;
pub use racing::*;
pub use records::*;
pub use sites::*;
pub use squatters::*;
pub use wait::*;
