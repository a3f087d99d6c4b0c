//! Customer sites for the tests that store under them: three sites, their keys, and the sites
//! file that configures them.

use std::path::{Path, PathBuf};

/// The three sites, each with an ingest key [`ingest_key`] and a read key `<id>-read`.
pub const SITES: [&str; 3] = ["acme", "bolt", "coda"];

/// `site`'s ingest key.
pub fn ingest_key(site: &str) -> String {
    format!("{site}-ingest")
}

/// Writes the sites file of [`SITES`] as `dir/sites.yaml` and returns its path.
pub fn write_sites_file(dir: &Path) -> PathBuf {
    let mut yaml = String::from("sites:\n");
    for id in SITES {
        yaml.push_str(&format!(
            "  - id: {id}\n    name: {id}\n    ingestKeys: [\"{}\"]\n    readKeys: [\"{id}-read\"]\n",
            ingest_key(id)
        ));
    }
    let path = dir.join("sites.yaml");
    std::fs::write(&path, yaml).expect("write the sites file");
    path
}

/// Adds [`SITES`] to the configuration file `config` (a `sites` block at its end naming a sites
/// file written beside it), for the fault and scale suites.
#[allow(dead_code)]
pub fn add_sites(config: &Path) {
    let sites_file = write_sites_file(config.parent().expect("a config file's directory"));
    let mut yaml = std::fs::read_to_string(config).expect("read the config file");
    let quoted = serde_json::to_string(sites_file.to_str().expect("UTF-8 temporary path"))
        .expect("a string serializes");
    yaml.push_str(&format!("sites:\n  file: {quoted}\n"));
    std::fs::write(config, yaml).expect("write the config file");
}
