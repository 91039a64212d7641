//! A small HTTP/1.1 server for GET and HEAD only, on the tokio runtime the daemon already has.
//!
//! Why not hyper: the page needs one request per connection, no bodies, no keep-alive, no
//! upgrades; hyper 1 + hyper-util + http + httparse add code to a binary that is already over
//! the GX budget (docs/performance.md, "Binary size"). This server is what the page needs and no
//! more, and every limit is a constant here:
//! - at most [`MAX_CONNECTIONS`] at once; one more is answered `503` without a task and closed;
//! - the request head within [`HEAD_TIMEOUT`] (slowloris: `408`) and [`MAX_HEAD_BYTES`] (`431`),
//!   the target within [`MAX_TARGET_BYTES`] (`414`);
//! - methods other than GET and HEAD: `405`; a body is never read;
//! - the response written within [`WRITE_TIMEOUT`], then the connection is closed (after
//!   draining at most [`LINGER_BYTES`] for [`LINGER_TIME`], so the client gets the response).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The request line and headers, bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The request target (path and query), bytes.
pub const MAX_TARGET_BYTES: usize = 1024;
/// The whole request head must arrive within this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The response must be taken by the client within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a response: unread bytes drained at most (see `linger`).
pub const LINGER_BYTES: usize = 256 * 1024;
/// ... for at most this long.
pub const LINGER_TIME: Duration = Duration::from_secs(1);

/// A parsed request: only what routing needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The path, without the query.
    pub path: String,
    /// The query, without `?` (empty when none).
    pub query: String,
}

/// A response; `Connection: close` always.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body (sent for GET, its length only for HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `body`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, content_type, body: body.into() }
    }

    /// A plain-text error.
    pub fn error(status: u16, text: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{status} {}: {text}\n", reason(status)))
    }

    fn bytes(&self, head_only: bool, extra: &str) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Content-Security-Policy: default-src 'self'; img-src 'self' data:\r\n{extra}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Why a request head was refused (the response to send).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refused {
    /// Not HTTP.
    Malformed,
    /// Neither GET nor HEAD.
    Method,
    /// Target over [`MAX_TARGET_BYTES`].
    TargetTooLong,
    /// Head over [`MAX_HEAD_BYTES`].
    HeadTooLarge,
}

impl Refused {
    fn response(self) -> (Response, &'static str) {
        match self {
            Refused::Malformed => (Response::error(400, "not an HTTP/1 request"), ""),
            Refused::Method => {
                (Response::error(405, "this page is read-only: GET only"), "Allow: GET, HEAD\r\n")
            }
            Refused::TargetTooLong => (Response::error(414, "the address is too long"), ""),
            Refused::HeadTooLarge => (Response::error(431, "the request head is too large"), ""),
        }
    }
}

/// Parses a complete head (up to the blank line): (is HEAD, request).
pub fn parse_head(head: &[u8]) -> Result<(bool, Request), Refused> {
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(head.len());
    let line =
        std::str::from_utf8(head.get(..line_end).unwrap_or_default()).map_err(|_| Refused::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(if line.len() > MAX_TARGET_BYTES { Refused::TargetTooLong } else { Refused::Malformed });
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refused::Malformed);
    }
    if target.len() > MAX_TARGET_BYTES {
        return Err(Refused::TargetTooLong);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => return Err(Refused::Method),
        _ => return Err(Refused::Malformed),
    };
    if !target.starts_with('/') {
        return Err(Refused::Malformed);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok((head_only, Request { path: path.to_owned(), query: query.to_owned() }))
}

/// Reads a request head: the bytes up to and with the blank line.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Refused> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| Refused::Malformed)?;
        if n == 0 {
            return Err(Refused::Malformed);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end + 2);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD_BYTES {
            // A request line that never ends is a too-long address, else too many headers.
            let line_ends = buf.windows(2).any(|w| w == b"\r\n");
            return Err(if line_ends { Refused::HeadTooLarge } else { Refused::TargetTooLong });
        }
    }
}

/// Serves one connection: one request, one response, close.
async fn serve_one<H>(mut stream: TcpStream, handler: Arc<H>)
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let (response, head_only, extra) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await
    {
        Err(_) => (Response::error(408, "the request took too long"), false, ""),
        Ok(Err(Refused::Malformed)) => return, // a closed or garbled connection: nothing to say
        Ok(Err(refused)) => {
            let (r, extra) = refused.response();
            (r, false, extra)
        }
        Ok(Ok(head)) => match parse_head(&head) {
            Ok((head_only, request)) => (handler(&request), head_only, ""),
            Err(refused) => {
                let (r, extra) = refused.response();
                (r, false, extra)
            }
        },
    };
    let bytes = response.bytes(head_only, extra);
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(&mut stream).await;
    }
}

/// Reads what the client still sends (a body, the rest of a too-long head) for a moment before
/// closing: closing with unread bytes makes the kernel send a reset, which can destroy the
/// response before the client has read it. Bounded: [`LINGER_BYTES`] within [`LINGER_TIME`].
async fn linger(stream: &mut TcpStream) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut left = LINGER_BYTES;
        let mut sink = [0u8; 4096];
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Accepts connections on `listener` until `shutdown`, each served by `handler`.
pub fn serve<H>(
    listener: TcpListener,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let busy = Response::error(503, "too many connections, try again").bytes(false, "Retry-After: 1\r\n");
    async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else {
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    match slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let handler = handler.clone();
                            tokio::spawn(async move {
                                serve_one(stream, handler).await;
                                drop(permit);
                            });
                        }
                        // Full: say so without a task (a non-blocking write), then close.
                        Err(_) => { let _ = stream.try_write(&busy); }
                    }
                }
                _ = shutdown.changed() => if *shutdown.borrow() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_refuse() {
        let (head_only, r) = parse_head(b"GET /api/history?hours=2 HTTP/1.1\r\nHost: x\r\n").unwrap();
        assert!(!head_only);
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/api/history", "hours=2"));
        assert!(parse_head(b"HEAD / HTTP/1.0\r\n").unwrap().0);
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\n"), Err(Refused::Method));
        assert_eq!(parse_head(b"DELETE /api/state HTTP/1.1\r\n"), Err(Refused::Method));
        assert_eq!(parse_head(b"GET / SSH-2.0\r\n"), Err(Refused::Malformed));
        assert_eq!(parse_head(b"GET http://x/ HTTP/1.1\r\n"), Err(Refused::Malformed));
        assert_eq!(parse_head(b"\x16\x03\x01\x02\x00"), Err(Refused::Malformed));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(parse_head(long.as_bytes()), Err(Refused::TargetTooLong));
    }
}
