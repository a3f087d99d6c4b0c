//! The service in this process ([`spawn_app`]): the same `Application` the binary runs, on a
//! random port of 127.0.0.1 with temporary directories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use log_pipeline::app::Application;
use log_pipeline::config::Config;
use reqwest::{Client, Method, Response, StatusCode};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::http::{client, sample, send};
use super::records::read_lines;
use super::wait::DEADLINE;

/// A service running in this process on a random port, with its own temporary directories.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    pub logs_dir: TempDir,
    _analytics_dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The temporary directories a [`TestApp`] runs on; [`TestApp::stop_keeping_dirs`] hands them
/// over so that [`spawn_app_in`] can start the next service on the same data.
pub struct AppDirs {
    pub logs: TempDir,
    pub analytics: TempDir,
}

/// Starts the service with test defaults (127.0.0.1:0, temporary directories), changed by
/// `customize`, which may also prepare files in `config.storage.logs_dir` before the store opens.
pub async fn spawn_app(customize: impl FnOnce(&mut Config)) -> TestApp {
    let dirs = AppDirs {
        logs: tempfile::tempdir().expect("temporary logs directory"),
        analytics: tempfile::tempdir().expect("temporary analytics directory"),
    };
    spawn_app_in(dirs, customize).await
}

/// [`spawn_app`] on existing directories (e.g. those of a stopped app).
pub async fn spawn_app_in(dirs: AppDirs, customize: impl FnOnce(&mut Config)) -> TestApp {
    let AppDirs {
        logs: logs_dir,
        analytics: analytics_dir,
    } = dirs;
    let mut config = Config::default();
    config.server.addr = "127.0.0.1:0".to_owned();
    config.storage.logs_dir = logs_dir.path().to_owned();
    config.storage.analytics_dir = analytics_dir.path().to_owned();
    customize(&mut config);
    let app = Application::build(config)
        .await
        .expect("the application builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        client: client(),
        logs_dir,
        _analytics_dir: analytics_dir,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    /// `POST /logs` with a `Content-Type`.
    pub async fn post_logs(&self, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        self.send_logs(&[("content-type", content_type)], body)
            .await
    }

    /// `POST /logs` with exactly the given headers.
    pub async fn send_logs(&self, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Response {
        self.request(Method::POST, "/logs", headers, body).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, &[], Vec::new()).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Response {
        send(&self.client, self.addr, method, path, headers, body).await
    }

    /// The `GET /metrics` text.
    pub async fn metrics_text(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics body")
    }

    /// A sample's value, `name` being `metric` or `metric{label="v",...}` as exported; `None` when
    /// the series does not exist (yet).
    pub async fn metric_opt(&self, name: &str) -> Option<f64> {
        sample(&self.metrics_text().await, name)
    }

    /// A sample's value; fails the test when the series does not exist.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}"))
    }

    /// The path of an hour file, e.g. `hour_path("2025-11-22/14.log.json")`.
    pub fn hour_path(&self, name: &str) -> PathBuf {
        self.logs_dir.path().join(name)
    }

    /// The lines of an hour file (none if it does not exist).
    pub fn read_hour_file(&self, name: &str) -> Vec<String> {
        read_lines(&self.hour_path(name))
    }

    /// The analytics directory (`storage.analyticsDir`).
    pub fn analytics_dir(&self) -> &Path {
        self._analytics_dir.path()
    }

    /// Stops the service and waits until it has drained (files synced and closed).
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// [`TestApp::stop`], keeping the directories for [`spawn_app_in`] or for inspection.
    pub async fn stop_keeping_dirs(mut self) -> AppDirs {
        self.shut_down().await;
        AppDirs {
            logs: self.logs_dir,
            analytics: self._analytics_dir,
        }
    }

    /// Starts the shutdown, as SIGTERM does, without waiting for it; [`TestApp::stop`] waits.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether the service has finished its shutdown.
    pub fn has_stopped(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    async fn shut_down(&mut self) {
        self.begin_stop();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(DEADLINE, handle)
                .await
                .expect("the service stops in time")
                .expect("the service task does not panic")
                .expect("the service stops cleanly");
        }
    }
}
