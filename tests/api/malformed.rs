//! The malformed-input corpus, `testdata/malformed/`: every case its `MANIFEST.tsv` lists is posted
//! to one service running under the corpus's limits (`config.yaml` there). Each must get exactly
//! the answer the manifest names, as JSON with a message; nothing may be stored, no answer may be a
//! 5xx, and the service must still be healthy and store a valid batch afterwards.

use std::collections::BTreeSet;
use std::path::Path;

use log_pipeline::config::Config;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::support::{
    HOUR_14, JSON, TestApp, assert_accepted, gzip, hour_files, json_array, line, record, spawn_app,
    zstd,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/malformed");

/// The manifest's columns, in order.
const COLUMNS: [&str; 11] = [
    "file",
    "content-type",
    "content-encoding",
    "body",
    "status",
    "error",
    "total",
    "index",
    "field",
    "line",
    "says",
];

/// How many cases the corpus has (docs/operations/suites.md: "the corpus of 128 malformed bodies").
const CASES: usize = 128;

const LOGS_5XX: &str = r#"http_request_duration_seconds_count{route="/logs",status_class="5xx"}"#;

/// Posts every case to one service; fails with every wrong answer, then checks that the service
/// is unharmed.
#[tokio::test]
async fn every_malformed_case_is_refused_exactly_and_nothing_is_stored() {
    let cases = corpus();
    // Every case counts: the README promises this many (and `corpus` checks that each file of the
    // corpus is listed once); a case lost from MANIFEST.tsv fails here.
    assert_eq!(cases.len(), CASES, "the corpus's cases");
    let app = spawn_corpus_app().await;
    let wrong = answer_all(&app, &cases).await;
    assert!(
        wrong.is_empty(),
        "{} of {} cases were answered wrongly:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert_unharmed(&app, cases.len()).await;
    app.stop().await;
}

/// The service under the corpus's limits.
async fn spawn_corpus_app() -> TestApp {
    let path = format!("{CORPUS}/config.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let limits = Config::from_yaml_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
    spawn_app(|config| {
        config.server.max_body_bytes = limits.server.max_body_bytes;
        config.ingestion = limits.ingestion;
    })
    .await
}

/// Posts every case in turn; returns one line for each case that got a wrong answer or stored
/// something, saying what.
async fn answer_all(app: &TestApp, cases: &[Case]) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut stored = hour_files(app.logs_dir.path());
    for case in cases {
        let mut problems = Vec::new();
        if let Err(why) = case.check_answer(app).await {
            problems.push(why);
        }
        let now = hour_files(app.logs_dir.path());
        if now != stored {
            let added: Vec<&String> = now
                .iter()
                .flat_map(|(file, lines)| {
                    let before = stored.get(file).map_or(0, Vec::len);
                    lines.iter().skip(before)
                })
                .collect();
            problems.push(format!("stored {added:?}"));
            stored = now;
        }
        if !problems.is_empty() {
            wrong.push(format!("{}: {}", case.file, problems.join("; ")));
        }
    }
    wrong
}

/// After `refused` refusals: nothing was ingested, none of them was a 5xx, and the service still
/// answers `/health` and stores a valid batch exactly.
async fn assert_unharmed(app: &TestApp, refused: usize) {
    assert_eq!(app.metric("logs_ingested_total").await, 0.0);
    assert_eq!(app.metric("log_batches_received_total").await, 0.0);
    assert_eq!(app.metric("invalid_requests_total").await, refused as f64);
    assert_eq!(app.metric_opt(LOGS_5XX).await.unwrap_or(0.0), 0.0);

    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("health body"), "ok");
    let batch = [
        record("2025-11-22T16:05:00.250+02:00", " /after ", "curl/8.5.0"),
        record(
            "2025-11-22T14:06:00Z",
            "/after/2",
            "Mozilla/5.0 (X11; Linux)",
        ),
    ];
    assert_accepted(app.post_logs(JSON, json_array(&batch)).await, 2).await;
    let stored = hour_files(app.logs_dir.path());
    let expected = [(
        HOUR_14.to_owned(),
        vec![
            line("2025-11-22T14:05:00.25Z", "/after", "curl/8.5.0"),
            line(
                "2025-11-22T14:06:00Z",
                "/after/2",
                "Mozilla/5.0 (X11; Linux)",
            ),
        ],
    )];
    assert_eq!(stored, expected.into_iter().collect());
    assert_eq!(app.metric("logs_ingested_total").await, 2.0);
}

/// One row of the manifest.
#[derive(Debug)]
struct Case {
    file: String,
    content_type: Option<Vec<u8>>,
    content_encoding: Option<String>,
    recipe: String,
    status: u16,
    error: String,
    total: Option<u64>,
    index: Option<u64>,
    field: Option<String>,
    line: Option<u64>,
    says: Option<String>,
}

/// Every case of the manifest; fails when a row is malformed or a file of the corpus has no row
/// (or a row no file).
fn corpus() -> Vec<Case> {
    let path = format!("{CORPUS}/MANIFEST.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, row)| !row.is_empty() && !row.starts_with('#'));
    let (_, header) = rows.next().expect("MANIFEST.tsv has a header row");
    assert_eq!(header.split('\t').collect::<Vec<_>>(), COLUMNS);
    let cases: Vec<Case> = rows
        .map(|(number, row)| {
            Case::parse(row).unwrap_or_else(|why| panic!("MANIFEST.tsv line {}: {why}", number + 1))
        })
        .collect();

    let listed: BTreeSet<&str> = cases.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(listed.len(), cases.len(), "a file is listed twice");
    let present: BTreeSet<String> = std::fs::read_dir(CORPUS)
        .expect("testdata/malformed")
        .map(|entry| entry.expect("directory entry").file_name())
        .map(|name| name.into_string().expect("UTF-8 file name"))
        .filter(|name| name != "MANIFEST.tsv" && name != "config.yaml")
        .collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present, "MANIFEST.tsv rows and corpus files differ");
    cases
}

impl Case {
    fn parse(row: &str) -> Result<Case, String> {
        let cells: Vec<&str> = row.split('\t').collect();
        let [
            file,
            content_type,
            encoding,
            recipe,
            status,
            error,
            total,
            index,
            field,
            line,
            says,
        ] = cells[..]
        else {
            return Err(format!("{} columns, not {}", cells.len(), COLUMNS.len()));
        };
        let text = |cell: &str| (cell != "-").then(|| cell.to_owned());
        let number = |cell: &str| -> Result<Option<u64>, String> {
            text(cell)
                .map(|n| n.parse().map_err(|_| format!("{n:?} is not a number")))
                .transpose()
        };
        Ok(Case {
            file: file.to_owned(),
            content_type: text(content_type).map(|value| unescape(&value)),
            content_encoding: text(encoding),
            recipe: recipe.to_owned(),
            status: status.parse().map_err(|_| format!("status {status:?}"))?,
            error: error.to_owned(),
            total: number(total)?,
            index: number(index)?,
            field: text(field),
            line: number(line)?,
            says: text(says),
        })
    }

    /// The request body: the file, built up by the `body` column's steps.
    fn body(&self) -> Vec<u8> {
        let path = Path::new(CORPUS).join(&self.file);
        let mut body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if self.recipe == "-" {
            return body;
        }
        for step in self.recipe.split('|') {
            let (op, arg) = step.split_once('=').unwrap_or((step, ""));
            let n = || -> usize {
                arg.parse()
                    .unwrap_or_else(|_| panic!("{}: step {step:?} needs a count", self.file))
            };
            body = match op {
                "times" => body.repeat(n()),
                "append" => {
                    let (text, count) = match arg.rsplit_once('*') {
                        Some((text, count)) => (text, count.parse().expect("append=TEXT*N")),
                        None => (arg, 1),
                    };
                    [body, text.repeat(count).into_bytes()].concat()
                }
                "pad" => {
                    let size = n();
                    body.resize(size.max(body.len()), b' ');
                    body
                }
                "gzip" => gzip(&body),
                "zstd" => zstd(&body),
                "head" => body[..n()].to_vec(),
                "drop" => body[..body.len() - n()].to_vec(),
                "flip" => {
                    let at: isize = arg.parse().expect("flip=I");
                    let at = if at < 0 { body.len() as isize + at } else { at };
                    body[at as usize] ^= 0xFF;
                    body
                }
                _ => panic!("{}: unknown body step {step:?}", self.file),
            };
        }
        body
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = &self.content_type {
            let value = HeaderValue::from_bytes(value).expect("a header value");
            headers.insert(CONTENT_TYPE, value);
        }
        if let Some(value) = &self.content_encoding {
            let value = HeaderValue::from_str(value).expect("a header value");
            headers.insert(CONTENT_ENCODING, value);
        }
        headers
    }

    /// Whether errors of this case's records carry a `line` (CSV and NDJSON do).
    fn has_lines(&self) -> bool {
        let content_type = String::from_utf8_lossy(self.content_type.as_deref().unwrap_or(b""));
        ["csv", "ndjson", "jsonl"]
            .iter()
            .any(|format| content_type.contains(format))
    }

    /// Posts the case (headers are bytes, which the harness's `&str` headers cannot carry) and
    /// compares the answer with the manifest's.
    async fn check_answer(&self, app: &TestApp) -> Result<(), String> {
        let response = app
            .client
            .post(format!("http://{}/logs", app.addr))
            .headers(self.headers())
            .body(self.body())
            .send()
            .await
            .map_err(|err| format!("no answer: {err}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let text = response.text().await.map_err(|err| format!("{err}"))?;
        let answer: Value = serde_json::from_str(&text)
            .map_err(|err| format!("{status} with a body that is not JSON ({err}): {text}"))?;
        let expected = format!("{} {}", self.status, self.error);
        let got = format!(
            "{status} {}",
            answer["error"].as_str().unwrap_or("(no error code)")
        );
        if got != expected {
            return Err(format!("expected {expected}, got {got}: {text}"));
        }
        if !content_type.is_some_and(|t| t.starts_with("application/json")) {
            return Err(format!("not application/json: {text}"));
        }
        self.check_body(&answer)
            .map_err(|why| format!("{why}; answer: {text}"))
    }

    /// The body's fields for its error code, as the `POST /logs` table of docs/api.md lists them.
    fn check_body(&self, answer: &Value) -> Result<(), String> {
        let message = answer["message"].as_str().unwrap_or_default();
        if message.is_empty() {
            return Err("no message".into());
        }
        let extra: &[&str] = match self.error.as_str() {
            "invalid_records" => &["errors", "totalErrors"],
            "malformed_body" => &["column", "line"],
            "body_too_large" => &["limit"],
            "unsupported_media_type" | "unsupported_content_encoding" => &["supported"],
            _ => &[],
        };
        let keys: BTreeSet<&str> = answer
            .as_object()
            .ok_or("not a JSON object")?
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = ["error", "message"].iter().chain(extra).copied().collect();
        if keys != expected {
            return Err(format!("fields {keys:?}, expected {expected:?}"));
        }
        let said = match self.error.as_str() {
            "invalid_records" => self.check_record_errors(answer)?,
            "malformed_body" => {
                let at = |key: &str| answer[key].as_u64().ok_or(format!("{key} is no number"));
                let (line, _column) = (at("line")?, at("column")?);
                expect("line", self.line, line)?;
                message
            }
            "unsupported_media_type" | "unsupported_content_encoding" => {
                let supported = answer["supported"].as_array().ok_or("no supported list")?;
                if supported.is_empty() || !supported.iter().all(Value::is_string) {
                    return Err("supported is not a list of names".into());
                }
                message
            }
            _ => message,
        };
        match &self.says {
            Some(says) if !said.contains(says.as_str()) => {
                Err(format!("expected {said:?} to contain {says:?}"))
            }
            _ => Ok(()),
        }
    }

    /// Checks `totalErrors` and the `errors` list; returns the first error's reason.
    fn check_record_errors<'a>(&self, answer: &'a Value) -> Result<&'a str, String> {
        let total = answer["totalErrors"]
            .as_u64()
            .ok_or("totalErrors is no number")?;
        let errors = answer["errors"].as_array().ok_or("errors is no list")?;
        if total == 0 || errors.len() as u64 != total.min(100) {
            return Err(format!("{} errors listed of {total}", errors.len()));
        }
        for error in errors {
            let field = error["field"].as_str().unwrap_or_default();
            let reason = error["reason"].as_str().unwrap_or_default();
            let fields = ["timestamp", "path", "userAgent", "record"];
            if error["index"].as_u64().is_none() || !fields.contains(&field) || reason.is_empty() {
                return Err(format!("error {error} lacks an index, field or reason"));
            }
            if error["line"].is_u64() != self.has_lines() {
                return Err(format!(
                    "error {error}: a line belongs to CSV and NDJSON errors"
                ));
            }
        }
        let first = &errors[0];
        expect("totalErrors", self.total, total)?;
        expect(
            "index",
            self.index,
            first["index"].as_u64().unwrap_or(u64::MAX),
        )?;
        expect("line", self.line, first["line"].as_u64().unwrap_or(0))?;
        let field = first["field"].as_str().unwrap_or_default();
        if self
            .field
            .as_deref()
            .is_some_and(|expected| expected != field)
        {
            return Err(format!(
                "first error's field is {field}, expected {:?}",
                self.field
            ));
        }
        Ok(first["reason"].as_str().unwrap_or_default())
    }
}

fn expect(what: &str, expected: Option<u64>, got: u64) -> Result<(), String> {
    match expected {
        Some(expected) if expected != got => Err(format!("{what} is {got}, expected {expected}")),
        _ => Ok(()),
    }
}

/// A manifest cell's bytes: `\xNN` is the byte NN.
fn unescape(cell: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut rest = cell.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match tail {
            [b'x', high, low, tail @ ..] if byte == b'\\' => {
                let hex = std::str::from_utf8(&[*high, *low]).map(str::to_owned);
                let value = hex.ok().and_then(|hex| u8::from_str_radix(&hex, 16).ok());
                bytes.push(value.unwrap_or_else(|| panic!("bad escape in {cell:?}")));
                rest = tail;
            }
            _ => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    bytes
}
