//! `server`: the HTTP listener and its limits.

use std::time::Duration;

use serde::Deserialize;

use crate::config::key::{Field, Flag, Key, lens};
use crate::config::load::go_duration;
use crate::config::ranges::{BYTES, Bounds, PERIOD};

/// `server`: each field's YAML key is its camelCase name; its meaning, range, flag and
/// environment variable are its row in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ServerConfig {
    pub addr: String,
    pub max_body_bytes: usize,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub read_header_timeout: Duration,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub read_body_timeout: Duration,
    pub min_body_rate: usize,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub request_timeout: Duration,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub shutdown_timeout: Duration,
    pub max_connections: usize,
    pub max_inflight_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: ":8082".to_owned(),
            max_body_bytes: 16 << 20,
            read_header_timeout: Duration::from_secs(10),
            read_body_timeout: Duration::from_secs(30),
            min_body_rate: 500,
            request_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_inflight_bytes: 64 << 20,
        }
    }
}

/// `server.addr`.
pub const ADDR: Key = Key::new(
    "server.addr",
    Field::Text(lens!(server.addr)),
    "HTTP listen address: `host:port`, `[v6]:port`, or Go-style `:port` for all interfaces (a \
     host name is resolved and its first address used).",
)
.flag(Flag::new("addr", "HTTP_ADDR", "ADDR"));

pub const KEYS: &[Key] = &[
    ADDR,
    Key::new(
        "server.maxBodyBytes",
        Field::Size(lens!(server.max_body_bytes)),
        "Largest accepted request body in bytes, measured after decompression; larger bodies \
         get 413.",
    )
    .range(BYTES),
    Key::new(
        "server.readHeaderTimeout",
        Field::Duration(lens!(server.read_header_timeout)),
        "Time a client has to send the first bytes, then each request's headers; also how long \
         a connection with no request in flight is kept (HTTP/1 and HTTP/2).",
    )
    .range(PERIOD),
    Key::new(
        "server.readBodyTimeout",
        Field::Duration(lens!(server.read_body_timeout)),
        "Time a client has to send the whole request body (408 beyond).",
    )
    .range(PERIOD),
    Key::new(
        "server.minBodyRate",
        Field::Size(lens!(server.min_body_rate)),
        "Bytes per second a request body must keep arriving at, measured over each 5 s while it \
         is read; a slower body gets 408 `body_too_slow` and gives back what it held (Apache \
         `mod_reqtimeout`'s `MinRate`).",
    )
    .range(Bounds::number(
        1,
        1 << 31,
        "bytes per second: 2 GiB/s is beyond any client's link, so every body would be too slow",
    )),
    Key::new(
        "server.requestTimeout",
        Field::Duration(lens!(server.request_timeout)),
        "Time for a whole request (503 `timeout` beyond). For `POST /logs`, the time until its \
         batch is handed over; then its real outcome is the answer (see \
         `storage.writeTimeout`).",
    )
    .range(PERIOD),
    Key::new(
        "server.shutdownTimeout",
        Field::Duration(lens!(server.shutdown_timeout)),
        "On SIGTERM/SIGINT, how long in-flight requests may finish before they are cut off.",
    )
    .range(PERIOD),
    Key::new(
        "server.maxConnections",
        Field::Size(lens!(server.max_connections)),
        "Most open connections. At the cap a new connection takes the place of the one idle \
         longest (no request in flight); when every one has a request in flight, it gets 503 \
         `too_many_connections` and is closed at once. Lowered at start-up to what the \
         open-file limit allows (logged).",
    )
    .range(Bounds::number(
        1,
        1 << 20,
        "Linux's default ceiling on a process's open files (fs.nr_open)",
    )),
    Key::new(
        "server.maxInflightBytes",
        Field::Size(lens!(server.max_inflight_bytes)),
        "Most bytes of request bodies being received and decoded at once, across all requests; \
         a body takes its share as its bytes arrive. A request whose next bytes would exceed it \
         gets 503 `overloaded` (with `Retry-After`), before its body is read when its \
         `Content-Length` is already more than is free. Decoding holds a body and its batch at \
         once (about twice the body, 2.5 times for CSV), so a body larger than that allows, \
         which could never be taken, gets 413 `body_too_large` with the `limit` instead.",
    )
    .range(BYTES),
];
