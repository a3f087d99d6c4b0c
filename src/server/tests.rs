//! The connection cap, eviction of the idlest, the canned 503 and the idle clock, on real
//! loopback sockets (the router is not involved).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::ServerConfig;

/// A new loopback connection: the accepted end (what the server holds) and the client's.
async fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (accepted, client)
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn at_the_cap_the_connection_idle_longest_gives_up_its_place() {
    let metrics = Metrics::new();
    let open = Arc::new(OpenConnections::new(2, metrics.clone()));
    let listener = listener().await;
    let (a_end, _a) = connection(&listener).await;
    let a = open.enter(&a_end).unwrap();
    let (b_end, _b) = connection(&listener).await;
    let b = open.enter(&b_end).unwrap();
    // `b` finishes a request after `a` was accepted: `a` has been idle longer.
    let a_idle_since = a.activity.idle_since().unwrap();
    while Instant::now() <= a_idle_since {
        std::hint::spin_loop();
    }
    drop(b.activity.begin());
    assert!(b.activity.idle_since().unwrap() > a_idle_since);

    let (c_end, _c) = connection(&listener).await;
    let c = open
        .enter(&c_end)
        .expect("an idle connection gives up its place");
    assert!(a.activity.evict.is_cancelled());
    assert!(!b.activity.evict.is_cancelled());
    assert_eq!(metrics.http_open_connections.get(), 2);
    assert_eq!(metrics.http_connections_evicted.get(), 1);
    assert_eq!(metrics.http_connections_refused.get(), 0);

    // The evicted connection's place is `c`'s now: its end gives back nothing.
    drop(a);
    assert_eq!(metrics.http_open_connections.get(), 2);
    drop((b, c));
    assert_eq!(metrics.http_open_connections.get(), 0);
}

#[tokio::test]
async fn when_every_connection_has_a_request_in_flight_a_new_one_hears_503() {
    let metrics = Metrics::new();
    let open = Arc::new(OpenConnections::new(1, metrics.clone()));
    let listener = listener().await;
    let (busy_end, _busy) = connection(&listener).await;
    let busy = open.enter(&busy_end).unwrap();
    let request = busy.activity.begin();

    let (late_end, mut late) = connection(&listener).await;
    assert!(open.enter(&late_end).is_none());
    drop(late_end);
    let mut heard = Vec::new();
    late.read_to_end(&mut heard).await.unwrap();
    assert_eq!(heard, TOO_MANY_CONNECTIONS);
    assert!(!busy.activity.evict.is_cancelled());
    assert_eq!(metrics.http_connections_refused.get(), 1);
    assert_eq!(metrics.http_open_connections.get(), 1);

    // Once its request is answered, the connection is idle and gives way.
    drop(request);
    let (next_end, _next) = connection(&listener).await;
    let _next = open
        .enter(&next_end)
        .expect("the idle connection gives way");
    assert!(busy.activity.evict.is_cancelled());
    assert_eq!(metrics.http_connections_evicted.get(), 1);
}

#[test]
fn the_canned_503_is_a_well_formed_json_answer() {
    let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 503 Service Unavailable"));
    let headers: Vec<(&str, &str)> = lines.map(|line| line.split_once(": ").unwrap()).collect();
    let header = |name| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| *value)
    };
    assert_eq!(
        header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("retry-after"), Some("1"));
    assert_eq!(header("connection"), Some("close"));
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"], "too_many_connections");
}

#[tokio::test]
async fn a_connection_is_idle_only_with_no_request_in_flight() {
    let activity = Arc::new(Activity::new());
    assert!(!activity.has_begun());
    let accepted = activity.idle_since().unwrap();
    let limit = Duration::from_millis(20);

    let request = activity.begin();
    assert!(activity.has_begun());
    assert_eq!(activity.idle_since(), None);
    let busy = tokio::time::timeout(limit * 4, activity.idle_for(limit)).await;
    assert!(busy.is_err(), "a request in flight is not idleness");

    drop(request);
    let ended = activity.idle_since().unwrap();
    assert!(
        ended > accepted,
        "the idle clock restarts when a request ends"
    );
    tokio::time::timeout(Duration::from_secs(10), activity.idle_for(limit))
        .await
        .expect("idle for the limit");
    assert!(ended.elapsed() >= limit);
}

#[test]
fn max_connections_is_lowered_to_what_file_descriptors_allow() {
    let mut server = ServerConfig {
        max_connections: usize::MAX,
        ..ServerConfig::default()
    };
    let settings = ServerSettings::from_config(&server);
    let (descriptors, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let allowed = (descriptors as usize)
        .saturating_sub(RESERVED_FILE_DESCRIPTORS)
        .max(1);
    assert_eq!(settings.max_connections, allowed);
    server.max_connections = 10;
    assert_eq!(ServerSettings::from_config(&server).max_connections, 10);
}
