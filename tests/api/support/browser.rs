//! The dashboard in a real browser: `tests/browser/dashboard.mjs` (headless Chromium through
//! playwright-core), which prints what a person sees as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::external::external_binary;

/// The browser driver (`tests/browser/dashboard.mjs`) with Node and its installed packages.
/// Fails the test, saying what to install, when Node, the packages or Chromium are missing.
pub fn browser_driver() -> (PathBuf, PathBuf, PathBuf) {
    let node = external_binary("LOG_PIPELINE_TEST_NODE", "node", "nodejs");
    let chromium = external_binary("LOG_PIPELINE_TEST_CHROMIUM", "chromium", "chromium");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "the browser test needs playwright-core: run `npm ci --prefix tests/browser` (make test does)"
    );
    (node, chromium, dir.join("dashboard.mjs"))
}

/// Where screenshots go: the cargo target directory (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory holds tmp/")
        .to_owned()
}

/// Runs the driver against `url` and returns what it saw (see `tests/browser/dashboard.mjs`).
pub fn look_at(url: &str, viewport: &str, screenshot: &Path, token: Option<&str>) -> Value {
    look_and_pick(url, viewport, screenshot, token, None)
}

/// [`look_at`], then, with `pick` (a site id and a second screenshot), chooses that site in the
/// page's site picker; what the page shows then is the report's `picked`.
pub fn look_and_pick(
    url: &str,
    viewport: &str,
    screenshot: &Path,
    token: Option<&str>,
    pick: Option<(&str, &Path)>,
) -> Value {
    let (node, chromium, script) = browser_driver();
    let mut command = Command::new(node);
    command
        .arg(script)
        .args(["--url", url, "--viewport", viewport])
        .arg("--chromium")
        .arg(chromium)
        .arg("--screenshot")
        .arg(screenshot);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    if let Some((site, picked)) = pick {
        command
            .args(["--pick", site])
            .arg("--screenshot-picked")
            .arg(picked);
    }
    let output = command.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser driver failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the driver's report is not JSON ({e}):\n{stdout}\n{stderr}"))
}

/// `n` as the page prints it: `1,234,567`.
pub fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
