//! The object store paused (SIGSTOP) for longer than the consumers' request timeout, under load,
//! then resumed (SIGCONT): the API goes on acknowledging (Kafka holds the records), the consumers'
//! writes fail and back off, and once the store answers again they catch up. Nothing is lost or
//! written twice.

use std::process::Command;
use std::time::Duration;

use crate::bucket::{Bucket, Instances, start_instances, stop_all};
use crate::load::{Batch, Load, tally};
use crate::support::{Names, kafka_broker, mark_ends, metric_now, test_bucket, wait_joined};

const PAUSE: Duration = Duration::from_secs(10);

/// A process stopped with SIGSTOP; SIGCONT when dropped, so a failing test leaves it running.
pub struct Paused(u32);

impl Paused {
    pub fn pause(pid: u32) -> Paused {
        signal(pid, "STOP");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_paused_then_resumed() {
    let test = test_bucket();
    let garage = test
        .garage_pid
        .expect("LOG_PIPELINE_TEST_GARAGE_PID (exported by scripts/garage-local.sh start) names the store to pause");
    let broker = kafka_broker();
    let names = Names::new("scale-pause");
    let bucket = Bucket::new(&test, &names.topic);
    let Instances {
        dirs: _dirs,
        children,
        addrs,
    } = start_instances(2, &broker, &names, &bucket).await;
    wait_joined(&addrs).await;

    let loads: Vec<Load> = (addrs.iter().enumerate())
        .map(|(i, addr)| Load::start(*addr, 2, &format!("/pause/{i}")))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = loads.iter().map(Load::accepted).sum::<usize>();
    let paused = Paused::pause(garage);
    tokio::time::sleep(PAUSE).await;
    let during = loads.iter().map(Load::accepted).sum::<usize>() - before;
    drop(paused);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut batches: Vec<Batch> = Vec::new();
    for load in loads {
        batches.extend(load.stop().await);
    }
    assert!(
        during > 0,
        "the API acknowledged nothing while the store was paused"
    );

    let (marks, ends) = mark_ends(&broker, &names.topic).await;
    batches.push(Batch::accepted_now(marks.lines));
    bucket.wait_stored_to(&names.topic, &ends).await;
    let (mut retries, mut consumed) = (0.0, 0.0);
    for addr in &addrs {
        retries += metric_now(*addr, "object_store_retries_total").await;
        consumed += metric_now(*addr, "kafka_consumed_messages_total").await;
    }
    let messages: i64 = ends.iter().sum();
    eprintln!(
        "{during} batches acknowledged while the store was paused; {retries} retried requests; \
         {consumed} messages consumed for {messages} in the topic"
    );
    assert!(retries > 0.0, "no request to the paused store was retried");
    stop_all(children).await;

    let (disk, _) = bucket.read().await;
    tally("object store paused 10 s (s3)", 1, &batches, &disk).record_and_check();
}
