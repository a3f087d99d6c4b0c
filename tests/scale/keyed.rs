//! Batches sent with an `Idempotency-Key` and sent again with the same key and body through
//! another instance (a client whose first answer was lost, retrying through the load balancer):
//! the other instance does not know the key and produces the batch again, into the same partition;
//! the partition's consumer drops the second copy. Every record is in the bucket once, and the
//! dashboard of any instance, in a real browser, shows them all. The same when every instance
//! restarted between the two copies: the partitions' new consumers learn the batches' records
//! from the intents in the bucket.

use std::net::SocketAddr;

use reqwest::Method;

use crate::bucket::{
    Bucket, Instances, mark_partitions, start_instances, stop_all, wait_joined_or_show,
};
use crate::load::{Batch, load_client, tally};
use crate::support::{
    Names, kafka_broker, line, look_at, mark_ends, metric_now, target_dir, test_bucket, try_send,
    with_commas,
};

/// Keyed batches, each sent twice.
const BATCHES: usize = 60;
const RECORDS: usize = 20;

/// Batch `n` of a test: its key, its body (`RECORDS` records of `hour`), and the lines stored for
/// its records.
fn keyed_batch(names: &Names, hour: &str, n: usize) -> (String, String, Vec<String>) {
    let lines: Vec<String> = (0..RECORDS)
        .map(|i| {
            line(
                &format!("{hour}:{:02}:00Z", i % 60),
                &format!("/keyed/{n}/{i}"),
                "retrier",
            )
        })
        .collect();
    let body = format!("[{}]", lines.join(","));
    (format!("{}-{n}", names.topic), body, lines)
}

/// POSTs `body` with `key` to `addr`; it must be answered 202.
async fn post_keyed(client: &reqwest::Client, addr: SocketAddr, key: &str, body: &[u8]) {
    let response = try_send(
        client,
        addr,
        Method::POST,
        "/logs",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        body.to_vec(),
    )
    .await
    .expect("an answer");
    assert_eq!(response.status(), 202, "{key} to {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_retried_through_another_instance_is_stored_once() {
    let broker = kafka_broker();
    let names = Names::new("scale-keyed");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let instances = start_instances(3, &broker, &names, &bucket).await;
    let addrs = instances.addrs.clone();
    wait_joined_or_show(&addrs, &instances.children.iter().collect::<Vec<_>>()).await;
    let client = load_client();
    let mut batches = Vec::new();
    // The last full hour: inside the dashboard's default range (the last 24 hours).
    let hour = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H");
    for n in 0..BATCHES {
        let (key, body, lines) = keyed_batch(&names, &hour.to_string(), n);
        post_keyed(&client, addrs[n % 3], &key, body.as_bytes()).await;
        post_keyed(&client, addrs[(n + 1) % 3], &key, body.as_bytes()).await;
        batches.push(Batch::accepted_now(lines));
    }
    let (marks, ends) = mark_ends(&broker, &names.topic).await;
    batches.push(Batch::accepted_now(marks.lines));
    bucket.wait_stored_to(&names.topic, &ends).await;
    let mut dropped = 0.0;
    for addr in &addrs {
        dropped += metric_now(*addr, "idempotency_duplicates_dropped_total").await;
    }
    // Any instance's page shows every record of the bucket (the end marks are of 2025).
    let seen = look_at(
        &format!("http://{}/dashboard", addrs[2]),
        "1280x900",
        &target_dir().join("dashboard-s3.png"),
        None,
    );
    assert_eq!(
        seen["total"],
        with_commas((BATCHES * RECORDS) as u64),
        "the dashboard of {}: {seen}",
        addrs[2]
    );
    stop_all(instances.children).await;
    let (in_bucket, _) = bucket.read().await;
    eprintln!("{dropped} records dropped as copies");
    assert_eq!(
        dropped,
        (BATCHES * RECORDS) as f64,
        "every record of every second copy is dropped"
    );
    tally(
        "keyed batch retried through another instance (s3)",
        1,
        &batches,
        &in_bucket,
    )
    .record_and_check();
}

/// Keyed batches sent again after the instances restarted.
const BATCHES_ACROSS_RESTARTS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_retried_after_every_instance_restarted_is_stored_once() {
    let broker = kafka_broker();
    let names = Names::new("scale-keyed-restart");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let client = load_client();
    let mut batches = Vec::new();
    let sent: Vec<_> = (0..BATCHES_ACROSS_RESTARTS)
        .map(|n| keyed_batch(&names, "2025-11-22T14", n))
        .collect();
    let mut dropped = 0.0;
    // The first copies through two instances; then two new ones (empty directories, new
    // members of the group) take the partitions over, and each batch is sent again.
    for round in 0..2 {
        let Instances {
            dirs: _dirs,
            children,
            addrs,
        } = start_instances(2, &broker, &names, &bucket).await;
        wait_joined_or_show(&addrs, &children.iter().collect::<Vec<_>>()).await;
        for (n, (key, body, _)) in sent.iter().enumerate() {
            post_keyed(&client, addrs[(n + round) % 2], key, body.as_bytes()).await;
        }
        let (marks, ends) = mark_partitions(&broker, &names.topic, round).await;
        batches.push(Batch::accepted_now(marks));
        bucket.wait_stored_to(&names.topic, &ends).await;
        for addr in &addrs {
            dropped += metric_now(*addr, "idempotency_duplicates_dropped_total").await;
        }
        stop_all(children).await;
    }
    batches.extend(
        sent.into_iter()
            .map(|(_, _, lines)| Batch::accepted_now(lines)),
    );
    let (in_bucket, _) = bucket.read().await;
    eprintln!("{dropped} records dropped as copies");
    let mut row = tally(
        "keyed batch retried after every instance restarted (s3)",
        1,
        &batches,
        &in_bucket,
    );
    row.measured = format!(
        "{dropped} of the {} records of the second copies dropped as copies",
        BATCHES_ACROSS_RESTARTS * RECORDS
    );
    row.record_and_check();
    assert_eq!(
        dropped,
        (BATCHES_ACROSS_RESTARTS * RECORDS) as f64,
        "every record of every second copy is dropped"
    );
}
