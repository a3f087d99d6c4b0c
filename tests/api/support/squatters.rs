//! Clients that hold what a request in flight holds while using as little as they can:
//! [`SlowBody`], a `POST /logs` that declares a large body and sends it a byte at a time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::http::{RawAnswer, read_head};
use super::wait::DEADLINE;

/// A `POST /logs` declaring `Content-Length` bytes it sends one at a time (after a burst, if
/// asked), from the moment the server reads its body until the server answers (or the squatter
/// is dropped, which closes it).
pub struct SlowBody {
    trickle: JoinHandle<()>,
    answer: JoinHandle<Vec<u8>>,
}

impl SlowBody {
    /// Sends a request head declaring `declared` bytes (with `headers` and
    /// `Expect: 100-continue`) and waits for the server's word: `Ok` once it answered
    /// `100 Continue` (its handler is reading the body), `Err` with its final answer when it
    /// refused the request at once. The body is spaces: `burst` of them at once, then one after
    /// every `pace`.
    pub async fn start(
        addr: SocketAddr,
        headers: &[(&str, &str)],
        declared: usize,
        burst: usize,
        pace: Duration,
    ) -> Result<SlowBody, RawAnswer> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!(
            "POST /logs HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {declared}\r\nExpect: 100-continue\r\n"
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send the request head");
        let mut first = read_head(&mut stream).await;
        if !first.starts_with(b"HTTP/1.1 100 ") {
            tokio::time::timeout(DEADLINE, stream.read_to_end(&mut first))
                .await
                .expect("the refusal's body in time")
                .expect("read the refusal's body");
            return Err(RawAnswer::parse(&first));
        }
        let (mut reader, mut writer) = stream.into_split();
        let trickle = tokio::spawn(async move {
            let mut next = vec![b' '; burst];
            while writer.write_all(&next).await.is_ok() {
                tokio::time::sleep(pace).await;
                next = vec![b' '];
            }
        });
        let answer = tokio::spawn(async move {
            let mut answer = Vec::new();
            // A reset after the answer still leaves what was read in `answer`.
            let _ = reader.read_to_end(&mut answer).await;
            answer
        });
        Ok(SlowBody { trickle, answer })
    }

    /// The answer the server gives on its own, within `within`.
    pub async fn answer_within(mut self, within: Duration) -> RawAnswer {
        let answer = tokio::time::timeout(within, &mut self.answer)
            .await
            .unwrap_or_else(|_| panic!("no answer to a slow body within {within:?}"))
            .expect("the reading task does not panic");
        RawAnswer::parse(&answer)
    }
}

impl Drop for SlowBody {
    fn drop(&mut self) {
        self.trickle.abort();
        self.answer.abort();
    }
}
