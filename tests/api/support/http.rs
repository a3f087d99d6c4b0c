//! Talking to a running service: the one request helper ([`try_send`]), answer checks, metric
//! scraping, and a raw HTTP/1 client for what reqwest cannot do (a request held half-way).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wait::DEADLINE;

/// A client that never uses a proxy and never reuses a connection, so a connection the server
/// closed after an early error answer cannot fail the next request.
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()
        .expect("reqwest client builds")
}

/// Sends one request to `addr`; the one place requests are built.
pub async fn try_send(
    client: &Client,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> reqwest::Result<Response> {
    let mut request = client.request(method, format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.into();
    if !body.is_empty() {
        request = request.body(body);
    }
    request.send().await
}

/// `POST /logs` of `body` as `content_type` with [`try_send`].
pub async fn try_post_logs(
    client: &Client,
    addr: SocketAddr,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> reqwest::Result<Response> {
    let headers = [("content-type", content_type)];
    try_send(client, addr, Method::POST, "/logs", &headers, body).await
}

/// [`try_send`], failing the test when no answer arrives.
pub async fn send(
    client: &Client,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Response {
    let what = format!("{method} {path}");
    try_send(client, addr, method, path, headers, body)
        .await
        .unwrap_or_else(|err| panic!("{what} got no answer: {err}"))
}

/// The JSON body of a response.
pub async fn body_json(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("response body");
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{status}: body is not JSON ({err}): {text}"))
}

/// Checks a JSON error answer — status, JSON content type, `error` code and a non-empty
/// `message` — and returns its body for further checks.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = content_type(&response);
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content type {content_type:?}"
    );
    let body = body_json(response).await;
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// Checks a 202 answer and its accepted count.
pub async fn assert_accepted(response: Response, records: usize) {
    let status = response.status();
    let body = body_json(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({ "accepted": records }));
}

pub fn content_type(response: &Response) -> String {
    header(response, CONTENT_TYPE.as_str())
}

/// A response header as text, empty when absent.
pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
        .unwrap_or_default()
}

/// Finds `name value` in Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad value for {name}: {value}"))
        })
}

/// The `GET /metrics` text of the service at `addr` (in-process or a child).
pub async fn scrape(addr: SocketAddr) -> String {
    let response = send(&client(), addr, Method::GET, "/metrics", &[], Vec::new()).await;
    assert_eq!(response.status(), StatusCode::OK, "GET /metrics of {addr}");
    response.text().await.expect("metrics body")
}

/// Every series of metric `name` in Prometheus text exposition, by label set:
/// `name{partition="0"} 5` is `partition="0"` → 5 (an unlabelled sample has the key "").
pub fn series(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(name)?;
            let labels = if rest.is_empty() {
                ""
            } else {
                rest.strip_prefix('{')?.strip_suffix('}')?
            };
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value for {key}: {value}"));
            Some((labels.to_owned(), value))
        })
        .collect()
}

/// A `POST /logs` sent by hand over one connection, held open half-way: the headers are sent
/// with `Expect: 100-continue`, and [`RawPost::start`] returns once the server answered
/// `100 Continue`, i.e. once the handler is reading the body. The request is then in flight
/// until [`RawPost::finish`] sends the body.
pub struct RawPost {
    stream: TcpStream,
    body: Vec<u8>,
}

impl RawPost {
    pub async fn start(addr: SocketAddr, content_type: &str, body: Vec<u8>) -> RawPost {
        RawPost::start_with(addr, content_type, "", body).await
    }

    /// [`RawPost::start`] with `extra` header lines (each ending in `\r\n`).
    pub async fn start_with(
        addr: SocketAddr,
        content_type: &str,
        extra: &str,
        body: Vec<u8>,
    ) -> RawPost {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             {extra}Expect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send request head");
        let interim = read_head(&mut stream).await;
        let interim = String::from_utf8_lossy(&interim);
        assert!(
            interim.starts_with("HTTP/1.1 100 Continue\r\n"),
            "{interim}"
        );
        RawPost { stream, body }
    }

    /// Sends the body and returns the final answer.
    pub async fn finish(mut self) -> RawAnswer {
        let body = std::mem::take(&mut self.body);
        self.stream
            .write_all(&body)
            .await
            .expect("send request body");
        self.answer().await
    }

    /// Sends no body; returns what the server answers on its own.
    pub async fn answer(mut self) -> RawAnswer {
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut answer))
            .await
            .expect("answer in time")
            .expect("read answer");
        RawAnswer::parse(&answer)
    }
}

/// Reads an answer's status line and headers off a raw connection, up to the blank line (or the
/// end of the stream).
pub async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read an answer");
        if read == 0 {
            break;
        }
        head.push(byte[0]);
    }
    head
}

/// A final answer read off a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Status line and headers, lowercased.
    pub head: String,
    pub body: Value,
}

impl RawAnswer {
    /// The answer in `bytes`: a status line, headers and a JSON body (fails the test otherwise).
    pub fn parse(bytes: &[u8]) -> RawAnswer {
        let answer = String::from_utf8_lossy(bytes);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end: {answer}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {answer}"));
        let body = serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {answer}"));
        RawAnswer {
            status,
            head: head.to_ascii_lowercase(),
            body,
        }
    }
}
