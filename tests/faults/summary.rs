//! The fault suite's results: one [`Row`] per scenario, appended to a file that
//! `scripts/test-faults.sh` prints as a table when the suite is done.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

/// What one scenario found. Every count but `acknowledged`, `refused` and `server_errors` must be
/// zero for the scenario to pass.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    /// How many times the fault was applied.
    pub runs: usize,
    /// Records answered 202.
    pub acknowledged: usize,
    /// Records of batches answered with an error.
    pub refused: usize,
    /// Acknowledged records not on disk.
    pub lost: usize,
    /// Records on disk more than once.
    pub duplicated: usize,
    /// Records on disk from a batch whose answer said nothing of it was stored.
    pub refused_yet_stored: usize,
    /// Lines that are not exactly one record (torn or glued).
    pub torn: usize,
    /// Records on disk that no client sent.
    pub never_sent: usize,
    /// 5xx answers (503 is expected under faults; 500 only as `outcome_unknown`).
    pub server_errors: usize,
    /// Of those, answers the API does not document under faults (500 `internal`, a 503 without
    /// `Retry-After`): must be 0.
    pub undocumented_5xx: usize,
    /// What else the scenario measured and checked, in words (e.g. the analytics scenarios' stale
    /// answers and peak memory); empty for most.
    pub measured: String,
}

/// Where rows go: `LOG_PIPELINE_FAULT_SUMMARY`, else `fault-summary.jsonl` in cargo's temporary
/// directory for integration tests.
fn summary_file() -> PathBuf {
    std::env::var_os("LOG_PIPELINE_FAULT_SUMMARY").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault-summary.jsonl"),
        PathBuf::from,
    )
}

impl Row {
    /// One row of `rows` (the parts of one scenario, e.g. one per site): their counts added up.
    #[allow(dead_code)]
    pub fn sum(scenario: &str, runs: usize, rows: Vec<Row>) -> Row {
        let total = Row {
            scenario: scenario.to_owned(),
            runs,
            ..Row::default()
        };
        rows.into_iter().fold(total, |total, row| Row {
            acknowledged: total.acknowledged + row.acknowledged,
            refused: total.refused + row.refused,
            lost: total.lost + row.lost,
            duplicated: total.duplicated + row.duplicated,
            refused_yet_stored: total.refused_yet_stored + row.refused_yet_stored,
            torn: total.torn + row.torn,
            never_sent: total.never_sent + row.never_sent,
            server_errors: total.server_errors + row.server_errors,
            undocumented_5xx: total.undocumented_5xx + row.undocumented_5xx,
            ..total
        })
    }

    /// Appends the row to the summary, then fails the test if the promise broke.
    pub fn record_and_check(&self) {
        let line = serde_json::to_string(self).expect("a row serializes");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(summary_file())
            .expect("the summary file opens");
        writeln!(file, "{line}").expect("the summary row is written");
        eprintln!("{line}");
        assert_eq!(
            (
                self.lost,
                self.duplicated,
                self.refused_yet_stored,
                self.torn,
                self.never_sent,
                self.undocumented_5xx
            ),
            (0, 0, 0, 0, 0, 0),
            "{}: lost, duplicated, refused yet stored, torn, never sent, undocumented 5xx: {self:?}",
            self.scenario
        );
    }
}
