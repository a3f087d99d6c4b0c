//! `kill -9` at random moments while clients send batches with an `Idempotency-Key` and retry
//! every failure (no answer, 409, 5xx) with the same key and body until they get a 202, as
//! docs/api.md ("Idempotent retries") tells them to: twenty rounds per mode, and at the end every
//! batch is on disk exactly once, whatever the kills interrupted (a write, an fsync, a produce, a
//! flush).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::task::JoinHandle;

use crate::crash::{Mode, drain_and_stop, start_ready, write_config};
use crate::load::{Batch, Disk, batch_body, load_client, tally};
use crate::support::{KAFKA_DEADLINE, KAFKA_POLL, Names, kafka_broker, poll_within, try_send};

/// Kills per mode.
const ROUNDS: usize = 20;
/// Concurrent clients.
const CLIENTS: usize = 4;
/// Batches acknowledged in a round before the kill lands.
const BATCHES_BEFORE_KILL: usize = 8;
/// A client waits this long before trying a batch again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Clients that live through every round: each sends its batches one after the other, every
/// one until it gets 202, to whichever process listens now.
struct KeyedLoad {
    addr: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<Vec<Batch>>>,
}

impl KeyedLoad {
    fn start(clients: usize) -> KeyedLoad {
        let addr = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let retries = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|client| {
                let (addr, stop) = (addr.clone(), stop.clone());
                let (accepted, retries) = (accepted.clone(), retries.clone());
                tokio::spawn(async move {
                    send_keyed_until_stopped(client, &addr, &stop, &accepted, &retries).await
                })
            })
            .collect();
        KeyedLoad {
            addr,
            stop,
            accepted,
            retries,
            clients,
        }
    }

    /// Where the clients send from now on (`None` while no process listens).
    fn point_at(&self, addr: Option<SocketAddr>) {
        *self.addr.lock().unwrap() = addr;
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Lets every client finish the batch it is on (to a 202), then returns every batch.
    async fn finish(self) -> (Vec<Batch>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let mut batches = Vec::new();
        for client in self.clients {
            batches.extend(client.await.expect("a keyed client does not panic"));
        }
        (batches, self.retries.load(Ordering::Relaxed))
    }
}

async fn send_keyed_until_stopped(
    client: usize,
    addr: &Mutex<Option<SocketAddr>>,
    stop: &AtomicBool,
    accepted: &AtomicUsize,
    retries: &AtomicUsize,
) -> Vec<Batch> {
    let http = load_client();
    let mut sent = Vec::new();
    for batch in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let prefix = format!("/keyed/{client}/{batch}");
        let (content_type, encoding, body, lines) = batch_body(&prefix, batch);
        let key = format!("fault-suite-{client}-{batch}");
        let mut headers = vec![
            ("content-type", content_type),
            ("idempotency-key", key.as_str()),
        ];
        headers.extend(encoding.map(|encoding| ("content-encoding", encoding)));
        let sent_at = Instant::now();
        let deadline = sent_at + KAFKA_DEADLINE * 2;
        let mut attempt = 0;
        loop {
            assert!(
                Instant::now() < deadline,
                "batch {key} got no 202 within {:?}",
                KAFKA_DEADLINE * 2
            );
            if attempt > 0 {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            attempt += 1;
            let Some(to) = *addr.lock().unwrap() else {
                continue;
            };
            match try_send(&http, to, Method::POST, "/logs", &headers, body.clone()).await {
                Ok(response) if response.status() == StatusCode::ACCEPTED => break,
                // No answer, 409 (in flight), 5xx, 503: the same key and body again.
                Ok(response) => assert!(
                    response.status() == StatusCode::CONFLICT
                        || response.status().is_server_error(),
                    "batch {key}: {} is not an answer to retry",
                    response.status()
                ),
                Err(_) => {}
            }
        }
        accepted.fetch_add(1, Ordering::Relaxed);
        sent.push(Batch {
            sent_at,
            ..Batch::accepted_now(lines)
        });
    }
    sent
}

async fn keyed_kill_9_rounds(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let broker = (mode == Mode::V2).then(kafka_broker);
    let names = Names::new("faults-keyed");
    let config = write_config(dir.path(), broker.as_deref(), &names);
    let logs = dir.path().join("logs");
    let load = KeyedLoad::start(CLIENTS);
    for round in 0..=ROUNDS {
        let (mut child, addr) = start_ready(dir.path(), &config, mode).await;
        load.point_at(Some(addr));
        let target = load.accepted() + BATCHES_BEFORE_KILL;
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            "keyed batches acknowledged in this round",
            async || match load.accepted() {
                n if n >= target => Ok(()),
                n => Err(n),
            },
        )
        .await;
        if round < ROUNDS {
            // A random moment: up to 30 ms after the round's quota.
            tokio::time::sleep(Duration::from_millis(rand_below(30))).await;
            child.kill();
            load.point_at(None);
            continue;
        }
        let (mut batches, retries) = load.finish().await;
        drain_and_stop(child, broker.as_deref(), &names.topic, &logs, &mut batches).await;
        eprintln!(
            "{} keyed batches, {retries} retries with their key",
            batches.len()
        );
        let scenario = match mode {
            Mode::V1 => "kill -9, clients retrying with Idempotency-Key (v1)",
            Mode::V2 => "kill -9, clients retrying with Idempotency-Key (v2)",
        };
        tally(scenario, ROUNDS, &batches, &Disk::read(&[&logs])).record_and_check();
        return;
    }
}

/// A number below `n` from the clock's nanoseconds (enough for "a random moment").
fn rand_below(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::from(since.subsec_nanos()));
    nanos % n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_keyed_retries_v1() {
    keyed_kill_9_rounds(Mode::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_keyed_retries_v2() {
    keyed_kill_9_rounds(Mode::V2).await;
}
