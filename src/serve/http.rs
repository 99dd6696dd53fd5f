//! HTTP for `serve`, on hyper (HTTP/1.1 parsing, 400 for a malformed
//! request, 431 for a request head larger than `MAX_HEAD`). Around it, the
//! limits a scraper storm or a slow client must not get past:
//! - at most `MAX_CONNECTIONS` at once. One more sheds the connection that
//!   has waited longest without sending its whole request head (503, then
//!   closed): idle and slow clients make room for a new one, which may be a
//!   scraper that sends its request at once. Only when every connection has
//!   sent its request (real load) does the new one get 503;
//! - the request head must arrive within `HEAD_TIMEOUT` (408, then closed);
//! - a whole connection (read the request, write the answer) lasts at most
//!   `CONNECTION_TIMEOUT`;
//! - one request per connection (no keep-alive), so those bounds are per
//!   request; a client may half-close after its request (`nc -N`) and still
//!   gets its answer.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

pub const MAX_CONNECTIONS: usize = 32;
pub const MAX_HEAD: usize = 16 * 1024;
/// A scraper sends its request head at once; anything slower is a slow
/// client holding a slot.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(2);
/// How often the accept loop looks for a stop request.
const TICK: Duration = Duration::from_millis(100);

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
const TIMED_OUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// One open connection, as the accept loop sees it.
struct Open {
    id: u64,
    accepted: Instant,
    /// Its whole request head has arrived: it is being answered, not shed.
    requested: Arc<AtomicBool>,
    /// A second handle on the socket: to say 503 and close it when shed.
    socket: Option<std::net::TcpStream>,
    task: tokio::task::AbortHandle,
}

#[derive(Default)]
struct Table {
    open: Vec<Open>,
    next_id: u64,
}

type Conns = Arc<Mutex<Table>>;

fn lock(c: &Conns) -> std::sync::MutexGuard<'_, Table> {
    c.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes room for one more connection: sheds the one that has waited
/// longest without a complete request. False when every one is being
/// answered.
fn make_room(t: &mut Table) -> bool {
    if t.open.len() < MAX_CONNECTIONS {
        return true;
    }
    let slowest = t
        .open
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.requested.load(Ordering::SeqCst))
        .min_by_key(|(_, c)| c.accepted)
        .map(|(i, _)| i);
    let Some(i) = slowest else {
        return false;
    };
    let shed = t.open.swap_remove(i);
    if let Some(mut s) = shed.socket {
        // Non-blocking like the original: a 503 if it fits, then closed.
        let _ = s.write(BUSY);
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    shed.task.abort();
    true
}

/// Accept and answer until a stop is requested, then let requests in flight finish.
pub async fn serve(listener: TcpListener, shared: Shared) {
    let conns: Conns = Arc::default();
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
        admit(&conns, stream, &shared);
        // Let the new connection read a request that is already there before
        // the next accept: in a burst of connects, a scraper accepted first
        // must not be shed by those behind it for want of a turn.
        tokio::task::yield_now().await;
    }
    drop(listener);
    let deadline = Instant::now() + DRAIN;
    while !lock(&conns).open.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts answering `stream`, shedding a slow connection to make room; 503
/// when every slot is being answered.
fn admit(conns: &Conns, stream: TcpStream, shared: &Shared) {
    let mut table = lock(conns);
    if !make_room(&mut table) {
        let _ = stream.try_write(BUSY);
        return;
    }
    let id = table.next_id;
    table.next_id += 1;
    let requested = Arc::new(AtomicBool::new(false));
    let socket = stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::net::TcpStream::from);
    let (shared, flag, done) = (shared.clone(), requested.clone(), conns.clone());
    let task = tokio::spawn(async move {
        // Dropped when the connection ends or is shed (aborted).
        let _gone = Gone { conns: done, id };
        connection(stream, shared, flag).await;
    });
    table.open.push(Open {
        id,
        accepted: Instant::now(),
        requested,
        socket,
        task: task.abort_handle(),
    });
}

/// Takes a finished connection out of the table (its socket handle with it).
struct Gone {
    conns: Conns,
    id: u64,
}

impl Drop for Gone {
    fn drop(&mut self) {
        lock(&self.conns).open.retain(|c| c.id != self.id);
    }
}

async fn connection(stream: TcpStream, shared: Shared, requested: Arc<AtomicBool>) {
    // hyper closes a connection whose request head is too slow without a
    // word; a second handle on the socket lets us say 408 first.
    let spare = stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::net::TcpStream::from);
    let service = service_fn(move |req: Request<Incoming>| {
        requested.store(true, Ordering::SeqCst);
        // A copy (counted references): a report rendered at this request
        // must not hold the scanner's publish waiting.
        let p = shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let accept = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let reply = routes::route(req.method(), req.uri().path(), accept, &p, Instant::now());
        async move { Ok::<_, Infallible>(response(reply)) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        // `nc -N`, curl --http0.9-style tools: the request, then a half-close.
        .half_close(true)
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
