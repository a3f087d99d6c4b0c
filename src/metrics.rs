//! Every Prometheus metric the service exports: names, help texts and labels live here and only
//! here. Names and help texts of the original service are kept verbatim because dashboards use
//! them. Labels are bounded: a route template, a status class, a partition, a consumer index and a
//! user-agent class (`bot` or `human`), a configured site's id ([`sites`]), never a path or a
//! user agent.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

mod refused;
mod sites;

pub use refused::Refused;
pub use sites::{RELOAD_APPLIED, RELOAD_REFUSED, SiteMetrics};

/// The version and commit this binary was built from: `log_pipeline_build_info`'s labels, and
/// what `log-pipeline --version` prints. The commit comes from build.rs (`GIT_COMMIT`, else `git
/// rev-parse --short=12 HEAD`, else `unknown`).
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const BUILD_COMMIT: &str = env!("LOG_PIPELINE_COMMIT");
/// `0.1.0 (0123456789ab)`: the version and the commit, as `--version` prints them after the name.
pub const VERSION_AND_COMMIT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LOG_PIPELINE_COMMIT"),
    ")"
);

/// Label values of `http_request_duration_seconds{route}` for requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Label values of `aggregation_requests_total{class}`.
pub const CLASS_BOT: &str = "bot";
pub const CLASS_HUMAN: &str = "human";

/// The service's metrics, registered in their own [`Registry`] (so parallel tests never collide).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Batches accepted by the API (answered 202).
    pub batches_received: IntCounter,
    /// `/logs` requests refused because of their body, its type or encoding, or their
    /// `Idempotency-Key` (400, 413, 415; see [`Refused::Invalid`]).
    pub invalid_requests: IntCounter,
    /// Records durably stored.
    pub logs_ingested: IntCounter,
    /// Failures while storing (or producing) accepted records.
    pub ingest_errors: IntCounter,
    /// Aggregation passes run.
    pub aggregation_runs: IntCounter,
    /// Batches of `POST /logs` waiting to be stored (v1) or acknowledged by the broker (v2);
    /// see [`Metrics::queued_batch`].
    pub queue_depth: IntGauge,
    /// Batches waiting for the store's writer thread, from any caller (the API in v1, the
    /// consumers in v2).
    pub store_queue_depth: IntGauge,
    /// Request latency by route template and status class.
    pub http_duration: HistogramVec,
    /// Open HTTP connections.
    pub http_open_connections: IntGauge,
    /// Connections refused because `server.maxConnections` were open, each with a request in
    /// flight.
    pub http_connections_refused: IntCounter,
    /// Idle connections closed to make room for a new one at `server.maxConnections`.
    pub http_connections_evicted: IntCounter,
    /// `POST /logs` requests refused because request bodies in flight reached
    /// `server.maxInflightBytes`.
    pub inflight_rejections: IntCounter,
    /// Records per accepted batch.
    pub batch_records: Histogram,
    /// Write groups committed by the store (one write + one fsync per file each).
    pub store_commits: IntCounter,
    /// fsyncs of hour files' data (per `storage.fsync`, at idle close and at shutdown).
    pub store_fsyncs: IntCounter,
    /// Hour files the store holds open.
    pub store_open_files: IntGauge,
    /// Failed fsyncs of hour files.
    pub store_fsync_errors: IntCounter,
    /// Hour files repaired after a failed rollback or fsync.
    pub store_repairs: IntCounter,
    /// Batches per committed write group: how well group commit coalesces.
    pub store_group_batches: Histogram,
    /// Requests refused with 503 because pending work hit its bound.
    pub overload_rejections: IntCounter,
    /// Time per aggregation pass.
    pub aggregation_duration: Histogram,
    /// Hour-file lines read by aggregation passes (valid or not).
    pub aggregation_lines: IntCounter,
    /// Hour-file lines skipped because they are not valid records.
    pub aggregation_skipped_lines: IntCounter,
    /// Hours whose summary could not be updated in a pass (retried next pass).
    pub aggregation_errors: IntCounter,
    /// Records counted by aggregation, by user-agent class (`bot`, `human`).
    pub aggregation_requests: IntCounterVec,
    /// Time an analytics request spent bringing its hours up to date before reading them.
    pub analytics_query_catch_up: Histogram,
    /// Analytics requests answered 503 `busy` (too many at once).
    pub analytics_queries_busy: IntCounter,
    /// Analytics queries whose blocking work stopped because the request went away.
    pub analytics_queries_cancelled: IntCounter,
    /// v2: analytics answers given before every acknowledged record was stored (`complete: false`).
    pub analytics_incomplete_answers: IntCounter,
    /// v2: records acknowledged by the broker.
    pub kafka_produced_messages: IntCounter,
    /// v2: records the broker did not acknowledge (error or timeout).
    pub kafka_produce_errors: IntCounter,
    /// v2: messages read by the consumers.
    pub kafka_consumed_messages: IntCounter,
    /// v2: messages sent to the dead-letter topic.
    pub kafka_dead_letters: IntCounter,
    /// v2: failed attempts to send a dead letter (each is retried).
    pub kafka_dead_letter_failures: IntCounter,
    /// v2: per consumer, partitions paused behind a dead letter that failed to go out.
    pub kafka_stalled_partitions: IntGaugeVec,
    /// v2: per partition, messages in the topic not yet durably stored here.
    pub kafka_consumer_lag: IntGaugeVec,
    /// v2: per consumer of this process, the partitions it is assigned.
    pub kafka_consumer_partitions: IntGaugeVec,
    /// v2: time from produce to durable storage, per record.
    pub kafka_end_to_end: Histogram,
    /// Keys in the store's idempotency ledger.
    pub idempotency_keys: IntGauge,
    /// Requests answered with the outcome of an earlier one with the same key and body.
    pub idempotency_replays: IntCounter,
    /// Requests refused because of their key, by reason (`in_flight`, `reused`).
    pub idempotency_conflicts: IntCounterVec,
    /// v2: records of keyed batches the consumers found stored already and dropped.
    pub idempotency_duplicates_dropped: IntCounter,
    /// `storage.backend: s3`: objects written, by kind (`records`, `intent`, `summary`,
    /// `instance`).
    pub objects_written: IntCounterVec,
    /// `storage.backend: s3`: objects read, by kind (`records` read to be summarised, `intent`,
    /// `summary`).
    pub objects_read: IntCounterVec,
    /// `storage.backend: s3`: bytes of record objects written.
    pub object_bytes_written: IntCounter,
    /// `storage.backend: s3`: time per successful put.
    pub object_put_duration: Histogram,
    /// `storage.backend: s3`: requests to the bucket that failed and were tried again.
    pub object_retries: IntCounter,
    /// With `sites.file`: the per-site series and the sites file's reloads.
    pub sites: SiteMetrics,
}

/// `object_store_objects_written_total` kinds.
pub const OBJECT_RECORDS: &str = "records";
pub const OBJECT_INTENT: &str = "intent";
pub const OBJECT_SUMMARY: &str = "summary";
pub const OBJECT_INSTANCE: &str = "instance";

/// `idempotency_conflicts_total` reasons.
pub const CONFLICT_IN_FLIGHT: &str = "in_flight";
pub const CONFLICT_REUSED: &str = "reused";

impl Metrics {
    /// Creates and registers every metric, plus the process collector.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid metric definition");
            registry
                .register(Box::new(counter.clone()))
                .expect("metric registered once");
            counter
        };
        let batches_received = counter(
            "log_batches_received_total",
            "Total number of log batches accepted by the API.",
        );
        let invalid_requests = counter(
            "invalid_requests_total",
            "Total number of /logs requests rejected during parsing or validation.",
        );
        let logs_ingested = counter(
            "logs_ingested_total",
            "Total number of log entries successfully persisted to storage.",
        );
        let ingest_errors = counter(
            "ingest_errors_total",
            "Total number of errors while ingesting log entries (storage or Kafka failures).",
        );
        let aggregation_runs = counter(
            "aggregation_runs_total",
            "Total number of aggregation task executions.",
        );
        let store_commits = counter(
            "store_commits_total",
            "Total number of write groups committed to the hour files (one write and one fsync per file each).",
        );
        let store_fsyncs = counter(
            "store_fsyncs_total",
            "Total number of fsyncs of hour files' data.",
        );
        let store_fsync_errors = counter(
            "store_fsync_errors_total",
            "Total number of failed fsyncs of hour files (the store refuses writes until it has repaired them).",
        );
        let store_repairs = counter(
            "store_repairs_total",
            "Total number of hour files repaired after a failed rollback or fsync.",
        );
        let aggregation_lines = counter(
            "aggregation_lines_total",
            "Total number of hour-file lines read by aggregation passes.",
        );
        let aggregation_skipped_lines = counter(
            "aggregation_skipped_lines_total",
            "Total number of hour-file lines skipped by aggregation because they are not valid records.",
        );
        let aggregation_errors = counter(
            "aggregation_errors_total",
            "Total number of hourly summaries that failed to update (retried on the next pass).",
        );
        let kafka_produced_messages = counter(
            "kafka_produced_messages_total",
            "Total number of records acknowledged by the Kafka broker.",
        );
        let kafka_produce_errors = counter(
            "kafka_produce_errors_total",
            "Total number of records the Kafka broker did not acknowledge (error or timeout).",
        );
        let kafka_consumed_messages = counter(
            "kafka_consumed_messages_total",
            "Total number of messages read by the Kafka consumers.",
        );
        let kafka_dead_letters = counter(
            "kafka_dead_letter_messages_total",
            "Total number of consumed messages that were not valid records and went to the dead-letter topic.",
        );
        let http_connections_refused = counter(
            "http_connections_refused_total",
            "Total number of connections refused because server.maxConnections were open, each with a request in flight.",
        );
        let http_connections_evicted = counter(
            "http_connections_evicted_total",
            "Total number of idle connections closed to make room for a new one at server.maxConnections.",
        );
        let inflight_rejections = counter(
            "ingest_inflight_rejections_total",
            "Total number of /logs requests answered 503 overloaded because request bodies in flight reached server.maxInflightBytes.",
        );
        let kafka_dead_letter_failures = counter(
            "kafka_dead_letter_failures_total",
            "Total number of failed attempts to send a dead letter (each is retried with back-off while its partition waits).",
        );
        let analytics_queries_busy = counter(
            "analytics_queries_busy_total",
            "Total number of analytics requests answered 503 busy because too many ran at once.",
        );
        let analytics_queries_cancelled = counter(
            "analytics_queries_cancelled_total",
            "Total number of analytics queries stopped because their request timed out or the client left.",
        );
        let analytics_incomplete_answers = counter(
            "analytics_incomplete_answers_total",
            "Total number of analytics answers given before every acknowledged record was in the hour files (v2).",
        );
        let idempotency_replays = counter(
            "idempotency_replays_total",
            "Total number of /logs requests answered with the outcome of an earlier request with the same Idempotency-Key and body (nothing stored again).",
        );
        let idempotency_duplicates_dropped = counter(
            "idempotency_duplicates_dropped_total",
            "Total number of records of keyed batches the Kafka consumers found already stored and dropped (v2).",
        );
        let idempotency_conflicts = IntCounterVec::new(
            Opts::new(
                "idempotency_conflicts_total",
                "Total number of /logs requests refused because of their Idempotency-Key: in_flight (409) or reused with another body (422).",
            ),
            &["reason"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(idempotency_conflicts.clone()))
            .expect("metric registered once");
        for reason in [CONFLICT_IN_FLIGHT, CONFLICT_REUSED] {
            idempotency_conflicts.with_label_values(&[reason]);
        }
        let aggregation_requests = IntCounterVec::new(
            Opts::new(
                "aggregation_requests_total",
                "Total number of records counted by aggregation, by user-agent class (bot or human; a rebuilt hour counts again).",
            ),
            &["class"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(aggregation_requests.clone()))
            .expect("metric registered once");
        for class in [CLASS_BOT, CLASS_HUMAN] {
            aggregation_requests.with_label_values(&[class]);
        }
        let kinds = |name: &str, help: &str| {
            let vec = IntCounterVec::new(Opts::new(name, help), &["kind"])
                .expect("valid metric definition");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric registered once");
            for kind in [
                OBJECT_RECORDS,
                OBJECT_INTENT,
                OBJECT_SUMMARY,
                OBJECT_INSTANCE,
            ] {
                vec.with_label_values(&[kind]);
            }
            vec
        };
        let objects_written = kinds(
            "object_store_objects_written_total",
            "Total number of objects written to the bucket (storage.backend: s3), by kind: records (an offset range's records of one hour), intent (the range a consumer decided on, written first), summary (an hour's analytics and the record objects it covers) or instance (an instance's ingest figures, for the dashboard).",
        );
        let objects_read = kinds(
            "object_store_objects_read_total",
            "Total number of objects read from the bucket, by kind: records (read once each to be summarised), intent, summary or instance (another instance's ingest figures).",
        );
        let object_bytes_written = counter(
            "object_store_bytes_written_total",
            "Total number of bytes of record objects written to the bucket.",
        );
        let object_retries = counter(
            "object_store_retries_total",
            "Total number of requests to the bucket that failed or timed out and were tried again.",
        );
        let overload_rejections = counter(
            "ingest_overload_rejections_total",
            "Total number of /logs requests answered 503 because pending work reached its bound.",
        );

        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid metric definition");
            registry
                .register(Box::new(gauge.clone()))
                .expect("metric registered once");
            gauge
        };
        let queue_depth = gauge(
            "ingestion_work_queue_depth",
            "Current number of log batches waiting in the ingestion work queue.",
        );
        let http_open_connections = gauge(
            "http_open_connections",
            "Current number of open HTTP connections.",
        );
        let store_open_files = gauge(
            "store_open_files",
            "Current number of hour files the store holds open.",
        );
        let idempotency_keys = gauge(
            "idempotency_keys",
            "Current number of Idempotency-Keys the store remembers (keyed batches stored within idempotency.retention, at most idempotency.maxKeys).",
        );
        let store_queue_depth = gauge(
            "store_queue_depth",
            "Current number of batches waiting for the store's writer (from the API in v1, from the Kafka consumers in v2).",
        );
        let gauge_vec =
            |name: &str, help: &str, label: &str| gauge_vec_of(&registry, name, help, &[label]);

        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template and status class.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route", "status_class"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("metric registered once");

        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric definition");
            registry
                .register(Box::new(histogram.clone()))
                .expect("metric registered once");
            histogram
        };
        let batch_records = histogram(
            "log_batch_records",
            "Number of records per accepted log batch.",
            vec![
                1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0,
            ],
        );
        let store_group_batches = histogram(
            "store_group_commit_batches",
            "Number of batches coalesced into one write group by the store.",
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        );
        let kafka_end_to_end = histogram(
            "kafka_produce_to_store_seconds",
            "Time from producing a record to Kafka until it is durably stored in its hour file.",
            vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        );
        let kafka_consumer_lag = gauge_vec(
            "kafka_consumer_lag",
            "Messages in the partition not yet durably stored by this process (high watermark minus stored position).",
            "partition",
        );
        let kafka_stalled_partitions = gauge_vec(
            "kafka_stalled_partitions",
            "Partitions of each Kafka consumer paused behind a dead letter that could not be delivered yet.",
            "consumer",
        );
        let kafka_consumer_partitions = gauge_vec(
            "kafka_consumer_partitions",
            "Partitions assigned to each Kafka consumer of this process.",
            "consumer",
        );
        let analytics_query_catch_up = histogram(
            "analytics_query_catch_up_seconds",
            "Time an analytics request spent bringing the hours it reads up to date.",
            vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        let object_put_duration = histogram(
            "object_store_put_seconds",
            "Time per successful put of an object to the bucket.",
            vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        let aggregation_duration = histogram(
            "aggregation_duration_seconds",
            "Duration of aggregation passes in seconds.",
            vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        );

        // Constant 1, labelled with what was built (as Prometheus exporters conventionally
        // expose it): a dashboard or alert joins on it to tell which build each instance runs.
        let build_info = gauge_vec_of(
            &registry,
            "log_pipeline_build_info",
            "A metric with a constant '1' value labeled by the version and commit log-pipeline was built from.",
            &["version", "commit"],
        );
        build_info
            .with_label_values(&[BUILD_VERSION, BUILD_COMMIT])
            .set(1);

        let sites = SiteMetrics::register(&registry);

        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registered once");

        Metrics {
            registry,
            batches_received,
            invalid_requests,
            logs_ingested,
            ingest_errors,
            aggregation_runs,
            queue_depth,
            store_queue_depth,
            http_duration,
            http_open_connections,
            http_connections_refused,
            http_connections_evicted,
            inflight_rejections,
            batch_records,
            store_commits,
            store_fsyncs,
            store_open_files,
            store_fsync_errors,
            store_repairs,
            store_group_batches,
            overload_rejections,
            aggregation_duration,
            aggregation_lines,
            aggregation_skipped_lines,
            aggregation_errors,
            aggregation_requests,
            analytics_query_catch_up,
            analytics_queries_busy,
            analytics_queries_cancelled,
            analytics_incomplete_answers,
            kafka_produced_messages,
            kafka_produce_errors,
            kafka_consumed_messages,
            kafka_dead_letters,
            kafka_dead_letter_failures,
            kafka_stalled_partitions,
            kafka_consumer_lag,
            kafka_consumer_partitions,
            kafka_end_to_end,
            idempotency_keys,
            idempotency_replays,
            idempotency_conflicts,
            idempotency_duplicates_dropped,
            objects_written,
            objects_read,
            object_bytes_written,
            object_put_duration,
            object_retries,
            sites,
        }
    }

    /// Counts one batch in `ingestion_work_queue_depth` until the returned guard is dropped.
    pub fn queued_batch(&self) -> QueuedBatch {
        self.queue_depth.inc();
        QueuedBatch(self.queue_depth.clone())
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec never fails");
        String::from_utf8(out).expect("text exposition is UTF-8")
    }
}

/// One batch counted in `ingestion_work_queue_depth` (see [`Metrics::queued_batch`]); however
/// the batch ends, dropping the guard takes it off the gauge.
pub struct QueuedBatch(IntGauge);

impl Drop for QueuedBatch {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A gauge family with `labels`, registered in `registry`.
fn gauge_vec_of(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let gauge = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(gauge.clone()))
        .expect("metric registered once");
    gauge
}

/// The `status_class` label value for a status code: `2xx`, `4xx`, ...
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_names_and_help_texts_are_exported() {
        let metrics = Metrics::new();
        metrics.batches_received.inc();
        metrics
            .http_duration
            .with_label_values(&["/logs", "2xx"])
            .observe(0.01);
        let text = metrics.render();
        assert!(text.contains(
            "# HELP log_batches_received_total Total number of log batches accepted by the API.\n"
        ));
        assert!(text.contains("log_batches_received_total 1\n"));
        assert!(text.contains(
            "# HELP logs_ingested_total Total number of log entries successfully persisted to storage.\n"
        ));
        for name in [
            "invalid_requests_total",
            "ingest_errors_total",
            "aggregation_runs_total",
            "ingestion_work_queue_depth",
            "log_batch_records_bucket",
            "http_request_duration_seconds_bucket{route=\"/logs\",status_class=\"2xx\"",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    /// The value of the series `series` (name and labels as rendered) in `text`.
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn each_refusal_counts_in_its_own_counter_only() {
        let series = [
            (Refused::Invalid, "invalid_requests_total"),
            (Refused::BodiesInFlight, "ingest_inflight_rejections_total"),
            (Refused::PendingWork, "ingest_overload_rejections_total"),
            (
                Refused::KeyInFlight,
                "idempotency_conflicts_total{reason=\"in_flight\"}",
            ),
            (
                Refused::KeyReused,
                "idempotency_conflicts_total{reason=\"reused\"}",
            ),
        ];
        for (why, counted_in) in series {
            let metrics = Metrics::new();
            metrics.count_refused(None, why);
            let text = metrics.render();
            for (_, other) in series {
                let expected = if other == counted_in { 1.0 } else { 0.0 };
                assert_eq!(value(&text, other), expected, "{why:?}: {other}");
            }
        }
    }

    #[test]
    fn build_info_is_one_labelled_with_this_build() {
        let text = Metrics::new().render();
        let series = format!(
            "log_pipeline_build_info{{commit=\"{BUILD_COMMIT}\",version=\"{BUILD_VERSION}\"}}"
        );
        assert_eq!(value(&text, &series), 1.0);
        assert_eq!(
            VERSION_AND_COMMIT,
            format!("{BUILD_VERSION} ({BUILD_COMMIT})")
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(202), "2xx");
        assert_eq!(status_class(413), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
