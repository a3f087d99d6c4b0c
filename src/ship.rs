//! `log-pipeline ship`: copies what the hour files hold to the bucket, for v1 (and v2 with
//! `storage.backend: local`), so that one place has every machine's records.
//!
//! An hour file only grows (late records for an old hour are appended to it too), so what was
//! shipped of it is a prefix, and each object holds a byte range of it, named by it:
//! `logs/YYYY-MM-DD/HH/v1-<source>-<start>-<end>.log.json` (`<source>` names the machine). Before
//! shipping an hour, the command lists the hour's objects of its source: the largest `end` is
//! how much was shipped. It then ships the complete lines after it, in objects of at most
//! `storage.s3.maxObjectBytes` (a longer line is an object of its own). There is no local state:
//! a run that was killed half-way leaves whole objects (a put is atomic), and the next run goes
//! on from the last of them. An object written twice (the put succeeded but its answer was lost)
//! is written with the same bytes under the same name.
//!
//! A file is shipped only once nothing was written to it for `--quiet-for`: the store may roll a
//! failed batch back by truncating the file, and what is older than the last write is settled.
//!
//! The bucket's analytics count shipped objects like the v2 consumers' ([`crate::analytics`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;

use crate::cli::ShipArgs;
use crate::config::Config;
use crate::layout;
use crate::metrics::Metrics;
use crate::metrics::OBJECT_RECORDS;
use crate::objects::{ObjectError, Objects};
use crate::record::SiteHour;

/// What shipping one hour file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shipped {
    /// Objects written, with the bytes and lines they hold.
    Objects {
        objects: usize,
        bytes: u64,
        lines: u64,
    },
    /// Everything (every complete line) was shipped before.
    UpToDate,
    /// Written to too recently; left for a later run.
    Busy { modified_ago: Duration },
}

/// Why an hour file was not shipped.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("{file}: {source}")]
    Read { file: PathBuf, source: io::Error },
    #[error(
        "{file}: the file has {length} bytes but {shipped} were shipped from it before; was it rewritten?"
    )]
    Shorter {
        file: PathBuf,
        length: u64,
        shipped: u64,
    },
    #[error(transparent)]
    Bucket(#[from] ObjectError),
}

/// Ships hour files from one logs directory as `source`.
pub struct Shipper {
    objects: Objects,
    logs_dir: PathBuf,
    source: String,
    max_object_bytes: usize,
    quiet_for: Duration,
}

impl Shipper {
    /// `source` must be a valid source name ([`check_source`]).
    pub fn new(
        objects: Objects,
        logs_dir: PathBuf,
        source: String,
        max_object_bytes: usize,
        quiet_for: Duration,
    ) -> Shipper {
        Shipper {
            objects,
            logs_dir,
            source,
            max_object_bytes: max_object_bytes.max(1),
            quiet_for,
        }
    }

    /// Every hour file, the root's and each site's, each sorted by hour.
    pub fn hour_files(&self) -> io::Result<Vec<(SiteHour, PathBuf)>> {
        layout::every_hour_file(&self.logs_dir)
    }

    /// Ships what `path` (the hour file of `hour`: a site's, or the root's) holds beyond what was
    /// shipped of it, below the site's prefix.
    pub async fn ship(&self, hour: &SiteHour, path: &Path) -> Result<Shipped, ShipError> {
        let read = |source| ShipError::Read {
            file: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        let modified_ago = SystemTime::now()
            .duration_since(meta.modified().map_err(read)?)
            .unwrap_or_default();
        if modified_ago < self.quiet_for {
            return Ok(Shipped::Busy { modified_ago });
        }
        let length = meta.len();
        let mut shipped = self.shipped(hour).await?;
        if shipped > length {
            return Err(ShipError::Shorter {
                file: path.to_owned(),
                length,
                shipped,
            });
        }
        let (mut objects, mut bytes, mut lines) = (0, 0, 0);
        while let Some(part) =
            next_part(&file, shipped, length, self.max_object_bytes).map_err(read)?
        {
            let end = shipped + part.len() as u64;
            let key = format!(
                "{}{}",
                layout::site_prefix(hour.site.as_ref()),
                layout::shipped_object(hour.hour, &self.source, shipped, end)
            );
            lines += memchr::memchr_iter(b'\n', &part).count() as u64;
            bytes += part.len() as u64;
            self.objects
                .put(&key, Bytes::from(part), OBJECT_RECORDS)
                .await?;
            objects += 1;
            shipped = end;
        }
        Ok(if objects == 0 {
            Shipped::UpToDate
        } else {
            Shipped::Objects {
                objects,
                bytes,
                lines,
            }
        })
    }

    /// How many bytes of `hour`'s file this source shipped: the largest end among its objects.
    async fn shipped(&self, hour: &SiteHour) -> Result<u64, ObjectError> {
        Ok(self
            .objects
            .site_hour_objects(hour.site.as_ref(), hour.hour)
            .await?
            .iter()
            .filter_map(|(name, _)| layout::parse_shipped_object(name, &self.source))
            .map(|(_, end)| end)
            .max()
            .unwrap_or(0))
    }
}

/// Runs `log-pipeline ship`: ships every hour file of `config`'s logs directory to the bucket of
/// `storage.s3`, printing a line per hour file and a total. `Ok(false)` if some hour file failed
/// (the others were shipped).
pub async fn run(config: &Config, args: &ShipArgs) -> anyhow::Result<bool> {
    check_source(&args.source).map_err(anyhow::Error::msg)?;
    if config.storage.s3.bucket.is_empty() {
        anyhow::bail!("storage.s3.bucket: required by `log-pipeline ship` (the bucket to ship to)");
    }
    let objects = Objects::connect(&config.storage.s3, Metrics::new())?;
    let shipper = Shipper::new(
        objects,
        config.storage.logs_dir.clone(),
        args.source.clone(),
        config.storage.s3.max_object_bytes,
        args.quiet_for,
    );
    let files = shipper
        .hour_files()
        .with_context(|| format!("cannot list {}", config.storage.logs_dir.display()))?;
    let (mut lines, mut objects, mut shipped, mut up_to_date, mut busy, mut failed) =
        (0, 0, 0, 0, 0, 0);
    for (site_hour, path) in files {
        let hour = match &site_hour.site {
            Some(site) => format!("{site} {}", site_hour.hour),
            None => site_hour.hour.to_string(),
        };
        match shipper.ship(&site_hour, &path).await {
            Ok(Shipped::Objects {
                objects: n,
                bytes,
                lines: l,
            }) => {
                println!("{hour}  shipped {l} lines, {bytes} bytes, in {n} objects");
                (lines, objects, shipped) = (lines + l, objects + n, shipped + 1);
            }
            Ok(Shipped::UpToDate) => {
                println!("{hour}  up to date");
                up_to_date += 1;
            }
            Ok(Shipped::Busy { modified_ago }) => {
                println!(
                    "{hour}  written to {}s ago; left for a later run (--quiet-for {})",
                    modified_ago.as_secs(),
                    humantime::format_duration(args.quiet_for)
                );
                busy += 1;
            }
            Err(err) => {
                eprintln!("log-pipeline ship: {hour}: {err}");
                failed += 1;
            }
        }
    }
    println!(
        "shipped {lines} lines in {objects} objects from {shipped} hour files; {up_to_date} up to date, {busy} written to too recently, {failed} failed"
    );
    Ok(failed == 0)
}

/// The next object's bytes from `start`: complete lines only, at most `max` bytes unless the first
/// line alone is longer; `None` once no complete line is left before `length`.
fn next_part(file: &File, start: u64, length: u64, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut want = max;
    loop {
        let available = length - start;
        let take = (want as u64).min(available) as usize;
        if take == 0 {
            return Ok(None);
        }
        let mut part = vec![0u8; take];
        file.read_exact_at(&mut part, start)?;
        // Within the limit, as many lines as fit; beyond it (one long line), that line alone.
        let cut = if want == max {
            memchr::memrchr(b'\n', &part)
        } else {
            memchr::memchr(b'\n', &part)
        };
        if let Some(newline) = cut {
            part.truncate(newline + 1);
            return Ok(Some(part));
        }
        if take as u64 == available {
            return Ok(None); // a line still being written, or torn
        }
        want = want.saturating_mul(2); // one line longer than an object: read on
    }
}

/// Checks a `--source` name: 1 to 64 letters, digits, `.`, `_` and `-`.
pub fn check_source(source: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&source.len())
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--source {source:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::Arc;

    use futures_util::TryStreamExt as _;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt as _};

    use super::*;
    use crate::metrics::Metrics;

    const HOUR: &str = "2025-11-22/14.log.json";

    struct Setup {
        store: Arc<InMemory>,
        logs: tempfile::TempDir,
    }

    fn setup() -> Setup {
        let logs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(logs.path().join("2025-11-22")).unwrap();
        Setup {
            store: Arc::new(InMemory::new()),
            logs,
        }
    }

    impl Setup {
        fn shipper(&self, max_object_bytes: usize) -> Shipper {
            let objects = Objects::new(
                self.store.clone(),
                "p",
                Duration::from_secs(5),
                Metrics::new(),
            );
            Shipper::new(
                objects,
                self.logs.path().to_owned(),
                "web-1".into(),
                max_object_bytes,
                Duration::ZERO,
            )
        }

        fn append(&self, text: &str) {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.logs.path().join(HOUR))
                .unwrap();
            file.write_all(text.as_bytes()).unwrap();
        }

        async fn ship(&self, max_object_bytes: usize) -> Shipped {
            self.shipper(max_object_bytes)
                .ship(&root_hour(), &self.logs.path().join(HOUR))
                .await
                .unwrap()
        }

        /// Every object: (name, body).
        async fn objects(&self) -> Vec<(String, String)> {
            let metas: Vec<_> = self.store.list(None).try_collect().await.unwrap();
            let mut objects = Vec::new();
            for meta in metas {
                let body = self.store.get(&meta.location).await.unwrap();
                let body = String::from_utf8(body.bytes().await.unwrap().to_vec()).unwrap();
                objects.push((meta.location.to_string(), body));
            }
            objects.sort();
            objects
        }
    }

    /// The root's hour of [`HOUR`].
    fn root_hour() -> SiteHour {
        SiteHour {
            site: None,
            hour: layout::parse_hour_file(HOUR).unwrap(),
        }
    }

    #[tokio::test]
    async fn each_sites_files_are_shipped_below_its_prefix() {
        let setup = setup();
        setup.append("root\n");
        for site in ["acme", "bolt"] {
            let path = setup.logs.path().join("sites").join(site).join(HOUR);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{site}\n")).unwrap();
        }
        let shipper = setup.shipper(1 << 20);
        for (hour, path) in shipper.hour_files().unwrap() {
            shipper.ship(&hour, &path).await.unwrap();
        }
        let name = "2025-11-22/14/v1-web-1-00000000000000000000-00000000000000000005.log.json";
        assert_eq!(
            setup.objects().await,
            [
                (format!("p/logs/{name}"), "root\n".to_owned()),
                (format!("p/sites/acme/logs/{name}"), "acme\n".to_owned()),
                (format!("p/sites/bolt/logs/{name}"), "bolt\n".to_owned()),
            ]
        );
        // What each site's prefix holds is what was shipped of its file: nothing again.
        for (hour, path) in shipper.hour_files().unwrap() {
            assert_eq!(shipper.ship(&hour, &path).await.unwrap(), Shipped::UpToDate);
        }
    }

    #[tokio::test]
    async fn complete_lines_are_shipped_once_and_late_lines_after_them() {
        let setup = setup();
        setup.append("a\nb\npartial");
        assert_eq!(
            setup.ship(1 << 20).await,
            Shipped::Objects {
                objects: 1,
                bytes: 4,
                lines: 2
            }
        );
        assert_eq!(setup.ship(1 << 20).await, Shipped::UpToDate);
        setup.append(" line\nc\n");
        assert_eq!(
            setup.ship(1 << 20).await,
            Shipped::Objects {
                objects: 1,
                bytes: 15,
                lines: 2
            }
        );
        assert_eq!(
            setup.objects().await,
            [
                (
                    "p/logs/2025-11-22/14/v1-web-1-00000000000000000000-00000000000000000004.log.json".to_owned(),
                    "a\nb\n".to_owned()
                ),
                (
                    "p/logs/2025-11-22/14/v1-web-1-00000000000000000004-00000000000000000019.log.json".to_owned(),
                    "partial line\nc\n".to_owned()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn objects_are_cut_at_lines_within_the_size_limit_and_a_long_line_is_one_object() {
        let setup = setup();
        setup.append("aa\nbb\ncc\nthis line is long\ndd\n");
        assert_eq!(
            setup.ship(6).await,
            Shipped::Objects {
                objects: 4,
                bytes: 30,
                lines: 5
            }
        );
        let bodies: Vec<String> = setup.objects().await.into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies, ["aa\nbb\n", "cc\n", "this line is long\n", "dd\n"]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_what_was_shipped_is_refused_by_name() {
        let setup = setup();
        setup.append("a\nb\n");
        setup.ship(1 << 20).await;
        std::fs::write(setup.logs.path().join(HOUR), "a\n").unwrap();
        let err = setup
            .shipper(1 << 20)
            .ship(&root_hour(), &setup.logs.path().join(HOUR))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("14.log.json: the file has 2 bytes but 4 were shipped"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_file_written_to_recently_waits() {
        let setup = setup();
        setup.append("a\n");
        let mut shipper = setup.shipper(1 << 20);
        shipper.quiet_for = Duration::from_secs(3600);
        let shipped = shipper
            .ship(&root_hour(), &setup.logs.path().join(HOUR))
            .await
            .unwrap();
        assert!(matches!(shipped, Shipped::Busy { .. }), "{shipped:?}");
        assert!(setup.objects().await.is_empty());
    }

    #[test]
    fn source_names_are_checked() {
        assert!(check_source("web-1.eu_west").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_source(bad).is_err(), "{bad:?}");
        }
    }
}
