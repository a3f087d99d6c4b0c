//! Kafka mode (v2) against a real Kafka-protocol broker (tansu, `scripts/kafka-local.sh`): every
//! batch answered 202 reaches the hour files exactly once — through several consumers, several
//! processes, `kill -9` and a paused broker — invalid messages go to the dead-letter topic, and
//! the Kafka metrics count it all.
//!
//! The broker is `LOG_PIPELINE_TEST_KAFKA` ([`kafka_broker`]): without one a test is skipped,
//! except under CI where it fails. Every test has its own topic, dead-letter topic and consumer
//! group ([`Names`]), so the tests share the broker and run in parallel. Every record is unique
//! (path `/<test>/<batch>/<i>`), so a duplicate shows. Nothing sleeps and hopes: waits poll (at
//! most [`KAFKA_DEADLINE`]) until the expected state, then exact values are asserted. "Everything
//! is consumed" is exact as well: the checkpoints stored with the lines add up to the number of
//! messages in the topic ([`wait_stored_count`]), or reach the offsets of records produced last
//! ([`mark_ends`]), so no line can still arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn acknowledged_batches_reach_the_hour_files_once_with_summaries_and_metrics() {
    let broker = kafka_broker();
    let names = Names::new("e2e");
    let app = spawn_app(|config| v2(config, &broker, &names)).await;

    // JSON with an offset timestamp, CSV with a quoted comma, a batch across both hours.
    let offset = records_at(
        "/e2e/0",
        4,
        "2025-11-22T16:05:00+02:00",
        "2025-11-22T14:05:00Z",
    );
    let mut browsers = records_at(
        "/e2e/1",
        3,
        "2025-11-22T15:10:00.250Z",
        "2025-11-22T15:10:00.25Z",
    );
    for rec in &mut browsers {
        rec.user_agent = "Mozilla/5.0 (X11, Linux)";
    }
    let mut both_hours = records_at("/e2e/2", 2, "2025-11-22T14:59:59Z", "2025-11-22T14:59:59Z");
    both_hours.extend(records_at(
        "/e2e/2/15",
        2,
        "2025-11-22T15:00:00Z",
        "2025-11-22T15:00:00Z",
    ));
    let plain = records("/e2e/3", 5);
    post_accepted(&app, JSON, json_body(&offset), 4).await;
    post_accepted(&app, CSV, csv_body(&browsers), 3).await;
    post_accepted(&app, JSON, json_body(&both_hours), 4).await;
    post_accepted(&app, CSV, csv_body(&plain), 5).await;
    let total = 16;
    // Answered only once the broker acknowledged every record, so these are exact already.
    assert_eq!(app.metric("kafka_produced_messages_total").await, 16.0);
    assert_eq!(app.metric("ingestion_work_queue_depth").await, 0.0);
    assert_eq!(app.metric("kafka_produce_errors_total").await, 0.0);

    wait_stored_count(&[app.logs_dir.path()], &names.topic, total).await;
    let sorted = |mut lines: Vec<String>| {
        lines.sort();
        lines
    };
    let all = [&offset[..], &browsers, &both_hours, &plain].concat();
    let expected_14: Vec<Rec> = all
        .iter()
        .filter(|r| r.stored.starts_with("2025-11-22T14"))
        .cloned()
        .collect();
    let expected_15: Vec<Rec> = all
        .iter()
        .filter(|r| r.stored.starts_with("2025-11-22T15"))
        .cloned()
        .collect();
    assert_eq!(
        sorted(app.read_hour_file(HOUR_14)),
        sorted(stored_lines(&expected_14))
    );
    assert_eq!(
        sorted(app.read_hour_file(HOUR_15)),
        sorted(stored_lines(&expected_15))
    );
    assert_eq!(
        app.read_hour_file(HOUR_14)
            .iter()
            .find(|l| l.contains("/e2e/0/0\"")),
        Some(&line("2025-11-22T14:05:00Z", "/e2e/0/0", "curl/8.5.0")),
        "the v1 line format: canonical UTC timestamp, three fields"
    );
    assert_eq!(
        hour_files(app.logs_dir.path()).len(),
        2,
        "only hours 14 and 15"
    );

    wait_summary_total(app.analytics_dir(), HOUR_14, 11).await;
    wait_summary_total(app.analytics_dir(), HOUR_15, 5).await;

    wait_counter(&[app.addr], "logs_ingested_total", 16.0).await;
    wait_counter(&[app.addr], "kafka_produce_to_store_seconds_count", 16.0).await;
    wait_lag_zero(app.addr).await;
    let metrics = app.metrics_text().await;
    for (name, expected) in [
        ("kafka_produced_messages_total", 16.0),
        ("kafka_consumed_messages_total", 16.0),
        ("logs_ingested_total", 16.0),
        ("kafka_produce_to_store_seconds_count", 16.0),
        ("kafka_dead_letter_messages_total", 0.0),
        ("kafka_produce_errors_total", 0.0),
        ("ingest_errors_total", 0.0),
        ("ingestion_work_queue_depth", 0.0),
        ("log_batches_received_total", 4.0),
    ] {
        assert_eq!(sample(&metrics, name), Some(expected), "{name}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn two_consumer_tasks_share_the_partitions_and_store_each_record_once() {
    let broker = kafka_broker();
    let names = Names::new("two-consumers");
    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.kafka.consumers = 2;
    })
    .await;

    let mut sent = Vec::new();
    for batch in 0..12 {
        let batch = records(&format!("/two-consumers/{batch}"), 5);
        post_accepted(&app, NDJSON, ndjson_body(&batch), 5).await;
        sent.push(Sent {
            lines: stored_lines(&batch),
            accepted: true,
        });
    }
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 60).await;
    let counts = assert_stored_once(&[app.logs_dir.path()], &sent, None);
    assert_eq!(counts.len(), 60);

    // The two consumers share the partitions: each owns some, together all of them.
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "both consumers to own partitions",
        async || {
            let owned = consumer_partitions(&app.metrics_text().await);
            let shared = owned.len() == 2
                && owned.values().all(|n| *n >= 1.0)
                && owned.values().sum::<f64>() == f64::from(PARTITIONS);
            if shared { Ok(()) } else { Err(owned) }
        },
    )
    .await;
    wait_lag_zero(app.addr).await;
    wait_counter(&[app.addr], "logs_ingested_total", 60.0).await;
    assert_eq!(
        app.metric("kafka_consumed_messages_total").await,
        60.0,
        "no message consumed twice"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn two_processes_in_one_group_split_the_partitions_and_store_each_record_once() {
    let broker = kafka_broker();
    let names = Names::new("two-processes");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let consumer = "  flushInterval: 50ms\n";
    let config_a = write_v2_config(dir_a.path(), &broker, &names, consumer);
    let config_b = write_v2_config(dir_b.path(), &broker, &names, consumer);
    // One after the other: the first creates the topics.
    let mut a = start_binary(dir_a.path(), &config_a);
    let addr_a = a.listening_addr().await;
    let mut b = start_binary(dir_b.path(), &config_b);
    let addr_b = b.listening_addr().await;
    let owned = wait_joined(&[addr_a, addr_b]).await;
    eprintln!("partitions: A {:?}, B {:?}", owned[0], owned[1]);

    let (logs_a, logs_b) = (dir_a.path().join("logs"), dir_b.path().join("logs"));
    let client = client();
    let mut sent = Vec::new();
    let mut batch = 0;
    // Keyless records go to partitions at random: post until both processes stored some.
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "records in both logs directories",
        async || {
            let records = records(&format!("/two-processes/{batch}"), 5);
            batch += 1;
            let (posted, answer) = post_records(&client, addr_a, &records).await;
            assert!(posted.accepted, "batch {batch}: {answer}");
            sent.push(posted);
            let stored = (hour_files(&logs_a).len(), hour_files(&logs_b).len());
            if stored.0 > 0 && stored.1 > 0 {
                Ok(())
            } else {
                Err(stored)
            }
        },
    )
    .await;

    let total = accepted_lines(&sent);
    let dirs = [logs_a.as_path(), logs_b.as_path()];
    wait_stored_count(&dirs, &names.topic, total).await;
    let counts = assert_stored_once(&dirs, &sent, None);
    assert_eq!(counts.len(), total);
    assert!(!line_counts(&[&logs_a]).is_empty() && !line_counts(&[&logs_b]).is_empty());
    wait_counter(&[addr_a, addr_b], "logs_ingested_total", total as f64).await;

    for child in [&mut a, &mut b] {
        child.terminate();
        let status = child.wait_exit().await;
        assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    }
    assert_eq!(
        line_counts(&dirs),
        counts,
        "a clean shutdown stores nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn kill_9_and_restart_stores_every_acknowledged_record_exactly_once() {
    let broker = kafka_broker();
    let names = Names::new("crash");
    let dir = tempfile::tempdir().unwrap();
    let config = write_v2_config(
        dir.path(),
        &broker,
        &names,
        "  flushSize: 16\n  flushInterval: 20ms\n",
    );
    let logs = dir.path().join("logs");
    const KILLS: usize = 2;
    let mut sent = Vec::new();
    for round in 0..=KILLS {
        let mut child = start_binary(dir.path(), &config);
        let addr = child.listening_addr().await;
        // Only once this process consumes can the kill land in the middle of its flushes.
        wait_joined(&[addr]).await;

        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = (0..3)
            .map(|racer| {
                let (stop, accepted) = (stop.clone(), accepted.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut sent = Vec::new();
                    for batch in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let prefix = format!("/crash/{round}/{racer}/{batch}");
                        let (posted, _) = post_records(&client, addr, &records(&prefix, 5)).await;
                        let ok = posted.accepted;
                        sent.push(posted);
                        if !ok {
                            break;
                        }
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    sent
                })
            })
            .collect();
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            "batches accepted and stored in this round",
            async || {
                let batches = accepted.load(Ordering::Relaxed);
                let ingested = metric_now(addr, "logs_ingested_total").await;
                if batches >= 40 && ingested >= 50.0 {
                    Ok(())
                } else {
                    Err((batches, ingested))
                }
            },
        )
        .await;
        if round < KILLS {
            child.kill();
        } else {
            stop.store(true, Ordering::Relaxed);
        }
        for racer in racers {
            sent.extend(racer.await.expect("racer task"));
        }
        if round < KILLS {
            continue;
        }

        let (marks, ends) = mark_ends(&broker, &names.topic).await;
        sent.push(marks);
        wait_stored_to(&[&logs], &names.topic, &ends).await;
        let topic = read_topic_to(&broker, &names.topic, &ends).await;
        let counts = assert_stored_once(&[&logs], &sent, Some(&topic));
        assert_files_hold_the_topic(&[&logs], &topic);
        assert_eq!(
            counts.len() as i64,
            ends.iter().sum::<i64>(),
            "every message of the topic is stored once"
        );
        let refused = sent.iter().filter(|batch| !batch.accepted).count();
        eprintln!(
            "{} batches sent, {refused} not accepted; {} lines stored",
            sent.len(),
            counts.len()
        );
        child.terminate();
        let status = child.wait_exit().await;
        assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
        assert_eq!(line_counts(&[&logs]), counts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn paused_broker_gets_503_with_retry_after_then_recovers_on_its_own() {
    let tansu = tansu_binary();
    let broker = OwnBroker::start(&tansu).await;
    let names = Names::new("paused");
    let produce_timeout = Duration::from_secs(1);
    let app = spawn_app(|config| {
        v2(config, &broker.addr, &names);
        config.kafka.produce_timeout = produce_timeout;
        // The pause outlasts `v2`'s 6 s session, and a tansu group whose member's session runs
        // out during a pause stays closed for good (docs/design/v2-delivery.md, "A group closed
        // for good").
        config.kafka.session_timeout = Duration::from_secs(45);
    })
    .await;
    let ready = async |status: StatusCode| {
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            &format!("/ready {status}"),
            async || match app.get("/ready").await.status() {
                answered if answered == status => Ok(()),
                answered => Err(answered),
            },
        )
        .await;
    };
    ready(StatusCode::OK).await;
    let mut sent = Vec::new();
    let mut batch = 0;
    let mut next = || {
        batch += 1;
        records(&format!("/paused/{batch}"), 5)
    };
    let before = next();
    post_accepted(&app, NDJSON, ndjson_body(&before), 5).await;
    sent.push(Sent {
        lines: stored_lines(&before),
        accepted: true,
    });

    broker.child.signal("STOP");
    // Once the probe (every second) finds the broker silent, batches are refused at once and
    // nothing of them is sent: 503, "nothing stored", a retry is safe.
    ready(StatusCode::SERVICE_UNAVAILABLE).await;
    for _ in 0..2 {
        let records = next();
        let started = Instant::now();
        let response = app.post_logs(NDJSON, ndjson_body(&records)).await;
        let elapsed = started.elapsed();
        let status = response.status();
        let retry_after = header(&response, "retry-after");
        let body = body_json(response).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(retry_after, "1", "{body}");
        assert_eq!(body["error"], "storage_unavailable", "{body}");
        assert!(elapsed < produce_timeout, "answered after {elapsed:?}");
        sent.push(Sent {
            lines: stored_lines(&records),
            accepted: false,
        });
    }

    broker.child.signal("CONT");
    // No restart, no operator: the next POSTs succeed once the broker answers again.
    let client = client();
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "a POST accepted after the broker resumed",
        async || {
            let (posted, answer) = post_records(&client, app.addr, &next()).await;
            let accepted = posted.accepted;
            sent.push(posted);
            if accepted { Ok(()) } else { Err(answer) }
        },
    )
    .await;
    for _ in 0..3 {
        let records = next();
        post_accepted(&app, NDJSON, ndjson_body(&records), 5).await;
        sent.push(Sent {
            lines: stored_lines(&records),
            accepted: true,
        });
    }
    ready(StatusCode::OK).await;

    let (marks, ends) = mark_ends(&broker.addr, &names.topic).await;
    sent.push(marks);
    wait_stored_to(&[app.logs_dir.path()], &names.topic, &ends).await;
    let topic = read_topic_to(&broker.addr, &names.topic, &ends).await;
    let counts = assert_stored_once(&[app.logs_dir.path()], &sent, Some(&topic));
    assert_files_hold_the_topic(&[app.logs_dir.path()], &topic);
    assert_eq!(
        counts.len() as i64,
        ends.iter().sum::<i64>(),
        "every message of the topic is stored once"
    );
    let refused = sent.iter().filter(|batch| !batch.accepted).count();
    assert!(refused >= 2);
    assert_eq!(
        metric_now(app.addr, "ingest_errors_total").await,
        refused as f64,
        "one ingest error per refused batch"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn invalid_messages_go_to_the_dead_letter_topic_and_consumption_goes_on() {
    let broker = kafka_broker();
    let names = Names::new("poison");
    let app = spawn_app(|config| v2(config, &broker, &names)).await;

    // Straight to the topic (the service created it), bypassing the API's validation.
    let producer: FutureProducer = kafka_client(&broker).create().expect("a producer builds");
    let valid = line(AT_14, "/poison/valid", "curl/8.5.0");
    let empty_path = json!({"timestamp": AT_14, "path": "", "userAgent": "curl/8.5.0"}).to_string();
    let mut delivered = BTreeMap::new();
    for payload in ["not json", empty_path.as_str(), valid.as_str()] {
        let delivery = producer
            .send(
                FutureRecord::<(), str>::to(&names.topic).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("producing {payload:?}: {err}"));
        delivered.insert(payload.to_owned(), (delivery.partition, delivery.offset));
    }

    let dead = {
        let (broker, topic, group) = (
            broker.clone(),
            names.dead_letter_topic.clone(),
            format!("{}-reader", names.group_id),
        );
        tokio::task::spawn_blocking(move || read_topic(&broker, &topic, &group, 2))
            .await
            .expect("reader task")
    };
    let mut seen = BTreeSet::new();
    for message in &dead {
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let headers: BTreeMap<String, String> = message
            .headers()
            .expect("dead letters carry headers")
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                (h.key.to_owned(), value)
            })
            .collect();
        let (partition, offset) = delivered
            .get(&payload)
            .unwrap_or_else(|| panic!("unexpected dead letter {payload:?}"));
        assert_ne!(payload, valid, "the valid record is not dead-lettered");
        assert_eq!(headers["source.topic"], names.topic, "{headers:?}");
        assert_eq!(
            headers["source.partition"],
            partition.to_string(),
            "{headers:?}"
        );
        assert_eq!(headers["source.offset"], offset.to_string(), "{headers:?}");
        // The reason, as the API would give it for the same record.
        let error = &headers["error"];
        if payload == "not json" {
            assert!(error.to_lowercase().contains("json"), "{headers:?}");
        } else {
            assert!(error.starts_with("path "), "{headers:?}");
        }
        seen.insert(payload);
    }
    assert_eq!(seen.len(), 2, "each poison message dead-lettered once");
    wait_counter(&[app.addr], "kafka_dead_letter_messages_total", 2.0).await;

    // The partitions go on: the valid message and a batch posted afterwards are stored.
    let after = records("/poison/after", 5);
    post_accepted(&app, NDJSON, ndjson_body(&after), 5).await;
    let sent = [
        Sent {
            lines: vec![valid.clone()],
            accepted: true,
        },
        Sent {
            lines: stored_lines(&after),
            accepted: true,
        },
    ];
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 8).await;
    let counts = assert_stored_once(&[app.logs_dir.path()], &sent, None);
    assert_eq!(counts.len(), 6, "the valid ones and nothing else");
    wait_counter(&[app.addr], "logs_ingested_total", 6.0).await;
    assert_eq!(app.metric("kafka_dead_letter_messages_total").await, 2.0);
    assert_eq!(app.metric("kafka_consumed_messages_total").await, 8.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn async_acknowledgement_answers_202_and_the_records_still_arrive() {
    let broker = kafka_broker();
    let names = Names::new("async");
    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.kafka.async_ack = true;
    })
    .await;
    let mut sent = Vec::new();
    for batch in 0..5 {
        let records = records(&format!("/async/{batch}"), 4);
        post_accepted(&app, NDJSON, ndjson_body(&records), 4).await;
        sent.push(Sent {
            lines: stored_lines(&records),
            accepted: true,
        });
    }
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 20).await;
    assert_eq!(
        assert_stored_once(&[app.logs_dir.path()], &sent, None).len(),
        20
    );
    wait_counter(&[app.addr], "kafka_produced_messages_total", 20.0).await;
    wait_counter(&[app.addr], "logs_ingested_total", 20.0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn a_batch_acknowledged_in_part_is_503_partially_delivered_with_its_counts() {
    let broker = kafka_broker();
    let names = Names::new("partial");
    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.ingestion.max_field_bytes = 2 << 20;
    })
    .await;
    // librdkafka refuses a message over its `message.max.bytes` (1,000,000) before sending it:
    // the first two records are produced, the third is refused, the fourth never sent.
    let mut batch = records("/partial", 4);
    batch[2].path = format!("/partial/huge/{}", "x".repeat(1_100_000));
    let response = app.post_logs(NDJSON, ndjson_body(&batch)).await;
    assert_eq!(header(&response, "retry-after"), "1");
    let body = assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "partially_delivered",
    )
    .await;
    assert_eq!(body["deliveredRecords"], 2, "{body}");
    assert_eq!(body["records"], 4, "{body}");
    assert_eq!(
        body["message"],
        "2 of the batch's 4 records reached Kafka before a failure; retrying the whole batch \
         without an Idempotency-Key stores those 2 again, with one it stores each record once"
    );
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 2).await;
    let sent = [Sent {
        lines: stored_lines(&batch[..2]),
        accepted: true,
    }];
    assert_eq!(
        assert_stored_once(&[app.logs_dir.path()], &sent, None).len(),
        2
    );
    assert_eq!(app.metric("kafka_produced_messages_total").await, 2.0);
    assert_eq!(app.metric("ingest_errors_total").await, 1.0);
    assert_eq!(app.metric("log_batches_received_total").await, 0.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn a_recreated_topic_is_read_from_its_beginning_despite_an_old_checkpoint() {
    let tansu = tansu_binary();
    let names = Names::new("recreated");
    let broker = OwnBroker::start(&tansu).await;
    let port = broker.port;
    let app = spawn_app(|config| v2(config, &broker.addr, &names)).await;
    let before = records("/recreated/before", 6);
    post_accepted(&app, NDJSON, ndjson_body(&before), 6).await;
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 6).await;
    let dirs = app.stop_keeping_dirs().await;
    let logs = dirs.logs.path().to_owned();
    assert!(
        checkpoint(&logs).unwrap().values().any(|next| *next > 0),
        "the checkpoint holds positions in the old topic"
    );

    // A broker restarted in memory mode: same address, no topics, offsets from 0 again.
    broker.kill();
    let broker = OwnBroker::start_on(&tansu, port).await;
    let app = spawn_app_in(dirs, |config| v2(config, &broker.addr, &names)).await;
    let after = records("/recreated/after", 3);
    post_accepted(&app, NDJSON, ndjson_body(&after), 3).await;
    let sent = [
        Sent {
            lines: stored_lines(&before),
            accepted: true,
        },
        Sent {
            lines: stored_lines(&after),
            accepted: true,
        },
    ];
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "the records of the new topic to be stored",
        async || match line_counts(&[&logs]).len() {
            9 => Ok(()),
            stored => Err(stored),
        },
    )
    .await;
    assert_eq!(assert_stored_once(&[&logs], &sent, None).len(), 9);
    app.stop().await;
}

/// `/ready` 200 means a produce can succeed now. Started against a broker without the topic (it
/// is created at start), the service says ready only once its producer can deliver: the first
/// batch sent then is acknowledged within a produce timeout shorter than the producer's first
/// connection and producer-id request take (before, `/ready` said 200 at once and that batch got
/// 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn ready_means_a_batch_is_acknowledged_now_even_on_a_just_created_topic() {
    let tansu = tansu_binary();
    let names = Names::new("ready-fresh");
    let broker = OwnBroker::start(&tansu).await;
    let app = spawn_app(|config| {
        v2(config, &broker.addr, &names);
        config.kafka.produce_timeout = Duration::from_millis(300);
    })
    .await;
    poll_within(
        KAFKA_DEADLINE,
        Duration::from_millis(2),
        "/ready 200",
        async || match app.get("/ready").await.status() {
            StatusCode::OK => Ok(()),
            status => Err(status),
        },
    )
    .await;
    let batch = records("/ready-fresh", 1);
    let (sent, body) = post_records(&app.client, app.addr, &batch).await;
    assert!(
        sent.accepted,
        "the first batch after /ready said 200: {body}"
    );
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 1).await;
    assert_stored_once(&[app.logs_dir.path()], &[sent], None);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn revoked_partitions_are_stored_and_committed_before_they_move() {
    let broker = kafka_broker();
    let names = Names::new("revoke");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Nothing is flushed by size or age: consumed records stay buffered until something else
    // (a revocation, a shutdown) makes the consumer store them.
    let consumer = "  flushSize: 1000000\n  flushInterval: 1h\n";
    let config_a = write_v2_config(dir_a.path(), &broker, &names, consumer);
    let config_b = write_v2_config(dir_b.path(), &broker, &names, consumer);
    let (logs_a, logs_b) = (dir_a.path().join("logs"), dir_b.path().join("logs"));
    let mut a = start_binary(dir_a.path(), &config_a);
    let addr_a = a.listening_addr().await;
    wait_joined(&[addr_a]).await;
    let client = client();
    let mut sent = Vec::new();
    for batch in 0..10 {
        let (posted, answer) =
            post_records(&client, addr_a, &records(&format!("/revoke/{batch}"), 5)).await;
        assert!(posted.accepted, "{answer}");
        sent.push(posted);
    }
    wait_counter(&[addr_a], "kafka_consumed_messages_total", 50.0).await;
    assert!(
        line_counts(&[&logs_a]).is_empty(),
        "buffered, not stored yet"
    );

    // B joins: A must store and commit what it read before its partitions move.
    let mut b = start_binary(dir_b.path(), &config_b);
    let addr_b = b.listening_addr().await;
    wait_joined(&[addr_a, addr_b]).await;
    assert_eq!(
        assert_stored_once(&[&logs_a], &sent, None).len(),
        50,
        "A stored everything it had read when the partitions were revoked"
    );
    wait_counter(&[addr_a], "logs_ingested_total", 50.0).await;

    // B starts after A's commits: at shutdown (which stores what is buffered) nothing is twice.
    for child in [&mut a, &mut b] {
        child.terminate();
        let status = child.wait_exit().await;
        assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    }
    let dirs = [logs_a.as_path(), logs_b.as_path()];
    assert_eq!(assert_stored_once(&dirs, &sent, None).len(), 50);
    assert!(line_counts(&[&logs_b]).is_empty(), "B re-read nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn the_binary_takes_version_and_brokers_from_the_environment() {
    let broker = kafka_broker();
    let names = Names::new("env");
    let dir = tempfile::tempdir().unwrap();
    let config = write_kafka_config(dir.path(), &names, "  flushInterval: 50ms\n");
    let mut command = pipeline(dir.path());
    command
        .env("LOG_PIPELINE_CONFIG", &config)
        .env("PIPELINE_VERSION", "2")
        .env("KAFKA_BROKERS", format!(" {broker} ,"));
    let mut child = ChildGuard::spawn(&mut command);
    let addr = child.listening_addr().await;
    let (posted, answer) = post_records(&client(), addr, &records("/env", 4)).await;
    assert!(posted.accepted, "{answer}");
    assert_eq!(metric_now(addr, "kafka_produced_messages_total").await, 4.0);
    let logs = dir.path().join("logs");
    wait_stored_count(&[&logs], &names.topic, 4).await;
    assert_eq!(assert_stored_once(&[&logs], &[posted], None).len(), 4);
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
}

/// A dead letter that cannot be delivered stalls only its own partition: the consumer keeps
/// polling (it stays in the group), the other partitions are stored, the stall shows in
/// `kafka_stalled_partitions` and `/ready`, and once the dead letter goes out the partition goes
/// on from after it. The failing sends are injected by librdkafka's mock cluster, in this process:
/// tansu accepts every produce (even to a deleted topic), so no real broker here refuses one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_dead_letter_stalls_only_its_partition_until_it_goes_out() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let mock = MockCluster::new(1).expect("a mock cluster");
    let names = Names::new("stall");
    mock.create_topic(&names.topic, PARTITIONS, 1).unwrap();
    mock.create_topic(&names.dead_letter_topic, 1, 1).unwrap();
    let broker = mock.bootstrap_servers();
    // The poison message on partition 0, valid records on every partition, one after it on 0.
    let producer: FutureProducer = kafka_client(&broker).create().expect("a producer builds");
    let mut sent = Vec::new();
    let produce = async |partition: i32, payload: String| {
        producer
            .send(
                FutureRecord::<(), str>::to(&names.topic)
                    .partition(partition)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("producing to {partition}: {err}"));
    };
    produce(0, "not a record".to_owned()).await;
    for partition in 0..PARTITIONS {
        let line = line(AT_14, &format!("/stall/{partition}"), "curl/8.5.0");
        produce(partition, line.clone()).await;
        sent.push(line);
    }
    // Every produce from now on is refused, five times: the dead letter's sends fail.
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 5];
    mock.request_errors(RDKafkaApiKey::Produce, &refused);

    let app = spawn_app(|config| v2(config, &broker, &names)).await;
    let stalled_partition_0 =
        |text: &str| sample(text, r#"kafka_stalled_partitions{consumer="0"}"#);
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "partition 0 to stall",
        async || {
            let text = app.metrics_text().await;
            match stalled_partition_0(&text) {
                Some(1.0) => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    // While it is stalled: the others are stored, 0's record after the poison is not, not ready.
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body_json(ready).await["reason"],
        "a partition waits for a dead letter that cannot be delivered yet"
    );
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "partitions 1 and 2 stored",
        async || {
            let counts = line_counts(&[app.logs_dir.path()]);
            match (counts.contains_key(&sent[1]), counts.contains_key(&sent[2])) {
                (true, true) => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    assert!(!line_counts(&[app.logs_dir.path()]).contains_key(&sent[0]));
    assert!(app.metric("kafka_dead_letter_failures_total").await >= 1.0);

    // The refusals run out: the dead letter goes out, the partition goes on, ready again.
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "partition 0 to go on",
        async || {
            let counts = line_counts(&[app.logs_dir.path()]);
            if counts.contains_key(&sent[0]) {
                Ok(())
            } else {
                Err(counts.len())
            }
        },
    )
    .await;
    let batches = [Sent {
        lines: sent.clone(),
        accepted: true,
    }];
    assert_eq!(
        assert_stored_once(&[app.logs_dir.path()], &batches, None).len(),
        3
    );
    assert_eq!(app.metric("kafka_dead_letter_messages_total").await, 1.0);
    assert_eq!(stalled_partition_0(&app.metrics_text().await), Some(0.0));
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    app.stop().await;
}

/// v2 acknowledges a record once it is in Kafka, before a consumer writes it; an analytics answer
/// must still include it (the request waits for the consumers, then catches the hours up). No pass
/// runs during the test (the next is an hour away), so only the queries can have counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn analytics_answers_include_every_acknowledged_batch_at_once() {
    let broker = kafka_broker();
    let names = Names::new("never-stale");
    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.aggregation.interval = Duration::from_secs(3600);
    })
    .await;
    wait_joined(&[app.addr]).await;
    let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let mut posted = 0;
    let mut humans = 0;
    for round in 0..3 {
        let mut batch = records(&format!("/never-stale/{round}"), 4);
        batch[0].user_agent = browser;
        post_accepted(&app, NDJSON, ndjson_body(&batch), 4).await;
        posted += 4;
        humans += 1;
        let response = app
            .get("/analytics?from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z")
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        assert_eq!(body["complete"], true, "round {round}: {body}");
        assert_eq!(body["totalRequests"], posted, "round {round}: {body}");
        assert_eq!(body["humanRequests"], humans, "round {round}: {body}");
        assert_eq!(
            body["botRequests"],
            posted - humans,
            "round {round}: {body}"
        );
        // The hour answer too.
        let response = app.get("/analytics?hour=2025-11-22T14:00:00Z").await;
        let hour = body_json(response).await;
        assert_eq!(hour["totalRequests"], posted, "round {round}: {hour}");
    }
    assert_eq!(app.metric("aggregation_runs_total").await, 1.0);
    assert_eq!(app.metric("analytics_incomplete_answers_total").await, 0.0);
    app.stop().await;
}

/// Until the consumers hold an assignment, no partition is owned by anyone here, and an answer
/// must not call itself complete without the acknowledged records (it used to, as if another
/// process owned every partition). To make that window long and certain, a member of the group is
/// killed first: the new process cannot be assigned anything until the dead member's session
/// (6 s) has expired. Once assigned, the answer is complete and includes the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn analytics_before_the_consumers_are_assigned_never_claim_to_be_complete() {
    let broker = kafka_broker();
    let names = Names::new("before-join");
    let dir = tempfile::tempdir().unwrap();
    let config = write_v2_config(dir.path(), &broker, &names, "  flushInterval: 50ms\n");
    let mut dead = start_binary(dir.path(), &config);
    wait_joined(&[dead.listening_addr().await]).await;
    dead.kill();
    dead.wait_exit().await;

    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.aggregation.interval = Duration::from_secs(3600);
    })
    .await;
    post_accepted(&app, NDJSON, ndjson_body(&records("/before-join", 4)), 4).await;
    let range = "/analytics?from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z";
    let early = body_json(app.get(range).await).await;
    assert!(
        early["complete"] == false || early["totalRequests"] == 4,
        "an answer called complete without the acknowledged records: {early}"
    );
    wait_joined(&[app.addr]).await;
    let joined = body_json(app.get(range).await).await;
    assert_eq!(joined["complete"], true, "{joined}");
    assert_eq!(joined["totalRequests"], 4, "{joined}");
    app.stop().await;
}
