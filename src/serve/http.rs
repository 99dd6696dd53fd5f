//! HTTP for `serve`, on hyper (HTTP/1.1 parsing, 400 for a malformed
//! request, 431 for a request head larger than `MAX_HEAD`). Around it, the
//! limits a scraper storm or a slow client must not get past:
//! - at most `MAX_CONNECTIONS` at once; one more gets 503 at once and is closed;
//! - the request head must arrive within `HEAD_TIMEOUT` (408, then closed);
//! - a whole connection (read the request, write the answer) lasts at most
//!   `CONNECTION_TIMEOUT`;
//! - one request per connection (no keep-alive), so those bounds are per request.
//!
//! Answers are copies of what the scanner published (`routes`), so serving
//! costs no scan.

use super::routes::{self, Reply};
use super::scanner::Shared;
use crate::stop;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub const MAX_CONNECTIONS: usize = 32;
pub const MAX_HEAD: usize = 16 * 1024;
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(2);
/// How often the accept loop looks for a stop request.
const TICK: Duration = Duration::from_millis(100);

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
const TIMED_OUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Accept and answer until a stop is requested, then let requests in flight finish.
pub async fn serve(listener: TcpListener, shared: Shared) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    while !stop::requested() {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = tokio::time::sleep(TICK) => continue,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: do not spin; the next tick may succeed.
                crate::diag!("cwleak serve: accept: {e}");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let _ = stream.try_write(BUSY);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            connection(stream, shared).await;
            drop(slot);
        });
    }
    drop(listener);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(all)).await;
}

async fn connection(stream: TcpStream, shared: Shared) {
    // hyper closes a connection whose request head is too slow without a
    // word; a second handle on the socket lets us say 408 first.
    let spare = stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::net::TcpStream::from);
    let service = service_fn(move |req: Request<Incoming>| {
        let reply = {
            let p = shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            routes::route(req.method(), req.uri().path(), &p, Instant::now())
        };
        async move { Ok::<_, Infallible>(response(reply)) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Err(e)) if e.is_timeout() => {
            if let Some(mut s) = spare {
                let _ = s.write_all(TIMED_OUT);
            }
        }
        // Done, a client that went away, or too slow a reader: nothing to add.
        _ => {}
    }
}

fn response(r: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(r.body));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(allow) = r.allow {
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    resp
}
