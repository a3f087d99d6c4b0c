//! The broker alone: what the Kafka broker sustains on this machine with no HTTP and no files,
//! through clients set up exactly as the service's (`kafka::producer::ingest_producer_config`,
//! `kafka::consumer::consumer_config`, the same `kafka.*` defaults), carrying the same records.
//! `bench/v2.sh` runs it right after the service's end-to-end run, against the same broker, and
//! prints the service's durable rate as a share of this one.
//!
//! One producer sends `TOTAL` records (the lines of `PAYLOAD`, a `POST /logs` JSON body, one
//! message per record, over and over, as the service does with each batch) as fast as its queue
//! takes them, while one consumer in a fresh group reads the topic from the start. Printed: the
//! producer's acknowledged records/s, and the end-to-end records/s (first message sent until the
//! consumer has read `TOTAL`), which is what the service's durable rate compares with.
//!
//! Env: `BROKER` (host:port, required), `PAYLOAD` (required), `TOTAL` (default 10,000,000),
//! `TOPIC` (default `broker-bench-<pid>`). Run through `bash bench/v2.sh`, or alone with
//! `cargo bench --bench broker`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log_pipeline::config::Config;
use log_pipeline::ingest::{self, Format, Limits};
use log_pipeline::kafka::broker::Broker;
use log_pipeline::kafka::consumer::consumer_config;
use log_pipeline::kafka::producer::ingest_producer_config;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// Counts acknowledged messages; any failed delivery ends the run.
struct Acks(Arc<AtomicUsize>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((err, _)) = result {
            eprintln!("broker bench: a delivery failed: {err}");
            std::process::exit(1);
        }
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "broker benchmark: run it with `cargo bench --bench broker` (or bash bench/v2.sh)"
        );
        return;
    }
    let broker = env("BROKER").expect("BROKER=host:port of the Kafka broker");
    let payload = env("PAYLOAD").expect("PAYLOAD=a JSON array of records (bench/gen_payload.py)");
    let total: usize = env("TOTAL").map_or(10_000_000, |v| v.parse().expect("TOTAL: a number"));
    let topic = env("TOPIC").unwrap_or_else(|| format!("broker-bench-{}", std::process::id()));

    let mut config = Config::default();
    // The lines the service would produce: each record of the payload, in the stored format.
    let limits = Limits::from_config(&config.ingestion);
    let body = std::fs::read(&payload).expect("PAYLOAD is readable");
    let batch =
        ingest::decode(Format::JsonArray, &body, &limits).expect("PAYLOAD is a valid batch");
    let lines: Vec<&[u8]> = batch
        .chunks
        .iter()
        .flat_map(|chunk| chunk.lines.split(|&b| b == b'\n'))
        .filter(|line| !line.is_empty())
        .collect();

    config.kafka.brokers = vec![broker];
    config.kafka.topic = topic.clone();
    config.kafka.dead_letter_topic = format!("{topic}.dlq");
    config.kafka.group_id = format!("{topic}-group");
    if let Some(bytes) = env("FETCH_MAX_BYTES") {
        config.kafka.fetch_max_bytes = bytes.parse().expect("FETCH_MAX_BYTES: a number");
    }
    let kafka = &config.kafka;

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime
        .block_on(Broker::new(kafka).expect("an admin client").ensure_topics())
        .expect("the topics exist");

    let acked = Arc::new(AtomicUsize::new(0));
    let producer: ThreadedProducer<Acks> =
        ingest_producer_config(kafka, config.storage.max_pending_bytes)
            .create_with_context(Acks(acked.clone()))
            .expect("a producer");
    let consumer: BaseConsumer = consumer_config(kafka, 0).create().expect("a consumer");
    consumer.subscribe(&[&topic]).expect("subscribed");
    // Join the group before the clock starts, as bench/v2.sh waits for the service's consumers.
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        let _ = consumer.poll(Duration::from_millis(100));
    }

    let started = Instant::now();
    let consuming = std::thread::spawn(move || {
        let mut read = 0;
        while read < total {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    std::hint::black_box(message.payload());
                    read += 1;
                }
                Some(Err(err)) => eprintln!("broker bench: consumer: {err}"),
                None if started.elapsed() > Duration::from_secs(600) => {
                    eprintln!("broker bench: consumer read {read} of {total} in 600 s");
                    std::process::exit(1);
                }
                None => {}
            }
        }
        started.elapsed()
    });

    let timestamp = chrono::Utc::now().timestamp_millis();
    for line in lines.iter().cycle().take(total) {
        let mut record = BaseRecord::<(), [u8], ()>::to(&topic)
            .payload(*line)
            .timestamp(timestamp);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => panic!("broker bench: produce: {err}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(600))
        .expect("every message acknowledged");
    let produced = started.elapsed();
    let consumed = consuming.join().expect("the consumer thread");
    assert_eq!(acked.load(Ordering::Relaxed), total);

    let rate = |elapsed: Duration| (total as f64 / elapsed.as_secs_f64()).round() as u64;
    println!("broker alone: {total} records of {} bytes on average", {
        lines.iter().map(|line| line.len()).sum::<usize>() / lines.len().max(1)
    });
    println!("broker alone acknowledged records/s: {}", rate(produced));
    println!("broker alone end-to-end records/s: {}", rate(consumed));
}
