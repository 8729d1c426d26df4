//! Serving an axum `Router` with bounds a hostile or broken client cannot get around, for
//! every HTTP listener of the agent and the detector.
//!
//! - At most `max_connections` connections per listener. A connection over the cap is
//!   accepted and the least recently active one closed in its place, so a flood of idle or
//!   slow clients cannot lock out a scrape (refusing the newcomer would). A connection
//!   whose request has fully arrived and is being answered is never the one closed: when
//!   every connection is answering one, the newcomer is closed instead.
//! - `header_timeout` for a request head, counted from when the connection is ready to
//!   read one: a client that sends its head slowly, or keeps an idle connection, is closed.
//! - `request_timeout` for the rest: the body and the handler. A request still unfinished
//!   then gets `408 Request Timeout` and its connection is closed.
//! - An accept error (the file-descriptor limit reached, say) is counted and logged at most
//!   once a second, and accepting resumes after a short pause rather than spinning.
//!
//! What happened is counted in [`ServerStats`], which a `/metrics` handler renders. axum's
//! own `serve` has neither a connection cap nor timeouts, hence this loop; it is the same
//! hyper HTTP/1 connection driver underneath.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower_service::Service;
use tracing::{debug, warn};

use crate::exposition::{write_header, write_sample, Format, MetricType};
use crate::web::{WebConfig, WebSecurity};

/// The bounds of one listener (`http:` in both configurations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Connections held at once; the least recently active is closed for a new one.
    pub max_connections: usize,
    /// Time for a request head, and the longest a keep-alive connection stays idle.
    #[serde(with = "crate::duration")]
    pub header_timeout: Duration,
    /// Time for a request's body and its answer, once its head is read.
    #[serde(with = "crate::duration")]
    pub request_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl ServerLimits {
    /// The first setting that would refuse everything, as `(field, reason)`.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1"));
        }
        if self.header_timeout.is_zero() {
            return Err(("header_timeout", "must be positive"));
        }
        if self.request_timeout.is_zero() {
            return Err(("request_timeout", "must be positive"));
        }
        Ok(())
    }
}

/// Why a connection was closed by the server rather than by its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// Over `max_connections`, as the least recently active.
    Limit,
    HeaderTimeout,
    RequestTimeout,
    /// A TLS client that did not complete its handshake (no certificate, a wrong one, not
    /// TLS at all).
    TlsHandshake,
}

impl Closed {
    const ALL: [Closed; 4] = [
        Closed::Limit,
        Closed::HeaderTimeout,
        Closed::RequestTimeout,
        Closed::TlsHandshake,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Closed::Limit => "limit",
            Closed::HeaderTimeout => "header_timeout",
            Closed::RequestTimeout => "request_timeout",
            Closed::TlsHandshake => "tls_handshake",
        }
    }
}

/// What the servers of one process did, shared by its listeners.
#[derive(Debug, Default)]
pub struct ServerStats {
    open: AtomicU64,
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    closed: [AtomicU64; Closed::ALL.len()],
}

impl ServerStats {
    fn close(&self, why: Closed) {
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed by the server for `reason` (`limit`, `header_timeout`,
    /// `request_timeout`, `tls_handshake`).
    pub fn closed(&self, reason: &str) -> u64 {
        Closed::ALL
            .iter()
            .find(|why| why.as_str() == reason)
            .map_or(0, |why| self.closed[*why as usize].load(Ordering::Relaxed))
    }

    /// Appends the families `{prefix}_http_connections`, `…_connections_accepted_total`,
    /// `…_connections_closed_total{reason}` and `…_accept_errors_total` in `format` (in
    /// OpenMetrics a counter's family is named without `_total`).
    pub fn render(&self, out: &mut String, prefix: &str, format: Format) {
        let counter = |out: &mut String, name: &str, help: &str| {
            let family = match format {
                Format::OpenMetrics => name.strip_suffix("_total").unwrap_or(name),
                Format::Prometheus => name,
            };
            write_header(out, family, help, MetricType::Counter);
        };
        let name = format!("{prefix}_http_connections");
        write_header(out, &name, "HTTP connections open.", MetricType::Gauge);
        write_sample(out, &name, [], self.open() as f64);
        let name = format!("{prefix}_http_connections_accepted_total");
        counter(out, &name, "HTTP connections accepted.");
        let accepted = self.accepted.load(Ordering::Relaxed);
        write_sample(out, &name, [], accepted as f64);
        let name = format!("{prefix}_http_connections_closed_total");
        counter(
            out,
            &name,
            "HTTP connections closed by the server: over the connection limit (least recently active first), or a request head or request not finished in time.",
        );
        for why in Closed::ALL {
            let closed = self.closed[why as usize].load(Ordering::Relaxed);
            write_sample(out, &name, [("reason", why.as_str())], closed as f64);
        }
        let name = format!("{prefix}_http_accept_errors_total");
        counter(
            out,
            &name,
            "Connections that could not be accepted (file-descriptor limit reached, say).",
        );
        let errors = self.accept_errors.load(Ordering::Relaxed);
        write_sample(out, &name, [], errors as f64);
    }
}

/// One open connection: when it last moved bytes, whether it is answering a request that
/// has fully arrived, and how to close it.
#[derive(Debug)]
struct Activity {
    /// Milliseconds since the listener started.
    last_ms: AtomicU64,
    answering: AtomicBool,
    close: Notify,
}

/// The sockets of one listener's connections, counted until they are closed.
#[derive(Debug, Default)]
struct Sockets {
    count: AtomicUsize,
    /// Notified as each closes.
    closed: Notify,
}

/// The open connections of one listener.
struct Connections {
    epoch: Instant,
    next_id: u64,
    open: HashMap<u64, Arc<Activity>>,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The connections a listener may hold: `configured`, but no more than half the file
/// descriptors the process may open, so that a flood of connections leaves descriptors for
/// files, snapshots and outgoing requests. The soft limit is raised to the hard one first,
/// as Go's runtime (and so Prometheus) does at start.
pub fn connection_cap(configured: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        if !known {
            return configured;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        let half = usize::try_from(limit.rlim_cur / 2).unwrap_or(usize::MAX);
        if half < configured {
            warn!(
                max_connections = configured,
                open_files_limit = limit.rlim_cur,
                cap = half.max(1),
                "max_connections lowered to half the open-files limit"
            );
            return half.max(1);
        }
    }
    configured
}

/// Binds `addr` for [`serve`], with the kernel's largest backlog (as Go's servers, and so
/// Prometheus, do): the standard 128 fills within milliseconds under a connection flood, and
/// a client whose handshake is dropped waits a second for its SYN to be retried.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // Capped by net.core.somaxconn.
    socket.listen(65_535)
}

/// Serves `router` on `listener` within `limits`, with the TLS and users of `web` if
/// given, until `shutdown` completes, then lets open requests finish (each within its
/// timeouts) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    mut limits: ServerLimits,
    web: Option<Arc<WebConfig>>,
    stats: Arc<ServerStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    limits.max_connections = connection_cap(limits.max_connections);
    let epoch = Instant::now();
    let connections = Arc::new(Mutex::new(Connections {
        epoch,
        next_id: 0,
        open: HashMap::new(),
    }));
    // Every connection holds a receiver; the sender's `closed()` says all have ended.
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_accept_warning: Option<Instant> = None;
    // Sockets not yet closed, which can be one over the cap while an evicted connection's
    // task has not run yet: no more are accepted until it has, so that a flood waits in
    // the kernel's backlog rather than using up descriptors.
    let sockets = Arc::new(Sockets::default());
    'accepting: loop {
        while sockets.count.load(Ordering::Acquire) > limits.max_connections {
            tokio::select! {
                () = &mut shutdown => break 'accepting,
                () = sockets.closed.notified() => {}
            }
        }
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if last_accept_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    warn!(%error, "http accept failed");
                    last_accept_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (id, activity) = {
            let mut connections = connections.lock().unwrap_or_else(PoisonError::into_inner);
            if connections.open.len() >= limits.max_connections {
                let idlest = connections
                    .open
                    .iter()
                    .filter(|(_, a)| !a.answering.load(Ordering::Relaxed))
                    .min_by_key(|(id, a)| (a.last_ms.load(Ordering::Relaxed), **id))
                    .map(|(id, _)| *id);
                match idlest.and_then(|id| connections.open.remove(&id)) {
                    Some(activity) => activity.close.notify_one(),
                    None => {
                        // Every connection is answering a whole request: the newcomer waits
                        // its turn by trying again.
                        stats.close(Closed::Limit);
                        drop(stream);
                        continue;
                    }
                }
            }
            let activity = Arc::new(Activity {
                last_ms: AtomicU64::new(connections.now_ms()),
                answering: AtomicBool::new(false),
                close: Notify::new(),
            });
            let id = connections.next_id;
            connections.next_id += 1;
            connections.open.insert(id, activity.clone());
            (id, activity)
        };
        let connection = Connection {
            stream: Tracked {
                stream,
                activity: activity.clone(),
                epoch,
            },
            router: router.clone(),
            limits,
            stats: stats.clone(),
            security: web.as_ref().map(|web| web.current()),
        };
        let (connections, mut stopping) = (connections.clone(), stopping.clone());
        sockets.count.fetch_add(1, Ordering::AcqRel);
        let sockets = sockets.clone();
        tokio::spawn(async move {
            connection.run(activity, &mut stopping).await;
            connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .open
                .remove(&id);
            sockets.count.fetch_sub(1, Ordering::AcqRel);
            sockets.closed.notify_one();
        });
    }
    drop(stopping);
    let _ = stop.send(true);
    stop.closed().await;
}

struct Connection {
    stream: Tracked,
    router: Router,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    /// TLS and users, as the web config file says when the connection arrived.
    security: Option<Arc<WebSecurity>>,
}

impl Connection {
    async fn run(self, activity: Arc<Activity>, stopping: &mut watch::Receiver<bool>) {
        let Connection {
            stream,
            router,
            limits,
            stats,
            security,
        } = self;
        stats.open.fetch_add(1, Ordering::Relaxed);
        let socket = Socket::of(&stream.stream);
        let served = Served {
            router,
            limits,
            stats: stats.clone(),
            activity: activity.clone(),
            security: security.clone(),
            socket,
        };
        match security.as_ref().and_then(|s| s.tls()).cloned() {
            None => served.drive(TokioIo::new(stream), stopping).await,
            // The handshake is bounded like a request head, and the connection may be
            // the one closed at the cap meanwhile.
            Some(acceptor) => tokio::select! {
                shaken = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)) => {
                    match shaken {
                        Ok(Ok(tls)) => served.drive(TokioIo::new(tls), stopping).await,
                        Ok(Err(error)) => {
                            stats.close(Closed::TlsHandshake);
                            debug!(%error, "TLS handshake failed");
                        }
                        Err(_) => {
                            stats.close(Closed::HeaderTimeout);
                            reset_on_close(socket);
                        }
                    }
                }
                () = activity.close.notified() => {
                    stats.close(Closed::Limit);
                    reset_on_close(socket);
                }
            },
        }
        stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What serving one connection's requests needs, over plain TCP or TLS alike.
struct Served {
    router: Router,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    activity: Arc<Activity>,
    security: Option<Arc<WebSecurity>>,
    socket: Socket,
}

impl Served {
    async fn drive<I>(self, io: I, stopping: &mut watch::Receiver<bool>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Served {
            router,
            limits,
            stats,
            activity,
            security,
            socket,
        } = self;
        let handler_stats = stats.clone();
        let handler_activity = activity.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut router = router.clone();
            let (stats, activity) = (handler_stats.clone(), handler_activity.clone());
            let security = security.clone();
            async move {
                if let Some(security) = &security {
                    if !security.authorized(request.headers()) {
                        return Ok(unauthorized());
                    }
                }
                let request = request.map(|body| {
                    if body.is_end_stream() {
                        activity.answering.store(true, Ordering::Relaxed);
                    }
                    Body::new(Watched {
                        body,
                        activity: activity.clone(),
                    })
                });
                let answer =
                    tokio::time::timeout(limits.request_timeout, router.call(request)).await;
                activity.answering.store(false, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        stats.close(Closed::RequestTimeout);
                        request_timeout()
                    }
                })
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection = builder.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        let mut draining = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        if error.is_timeout() {
                            stats.close(Closed::HeaderTimeout);
                            reset_on_close(socket);
                        } else {
                            debug!(%error, "http connection ended");
                        }
                    }
                    break;
                }
                () = activity.close.notified() => {
                    stats.close(Closed::Limit);
                    reset_on_close(socket);
                    break;
                }
                _ = stopping.wait_for(|stop| *stop), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A connection's socket, for setting options while the connection owns it.
#[derive(Debug, Clone, Copy)]
struct Socket(#[cfg(unix)] std::os::fd::RawFd);

impl Socket {
    fn of(stream: &TcpStream) -> Self {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd as _;
            Socket(stream.as_raw_fd())
        }
        #[cfg(not(unix))]
        {
            let _ = stream;
            Socket()
        }
    }
}

/// Makes closing `socket` send a reset instead of a FIN, for a client the server gives up
/// on: nothing is owed to it, and the server keeps no TIME_WAIT state whose four-tuple a
/// new client's connection could collide with (which costs that client a one-second SYN
/// retry, a missed scrape under a flood).
fn reset_on_close(socket: Socket) {
    #[cfg(unix)]
    {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the connection that owns the descriptor is still alive, and
        // setsockopt only reads the struct passed with its size.
        unsafe {
            libc::setsockopt(
                socket.0,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::addr_of!(linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(unix))]
    let _ = socket;
}

/// The answer to a request not finished within `request_timeout`; the connection closes.
fn request_timeout() -> Response<Body> {
    let mut response = Response::new(Body::from("request not finished in time\n"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// The answer to a request without a known user and password, when the web config file
/// names users.
fn unauthorized() -> Response<Body> {
    let mut response = Response::new(Body::from("Unauthorized\n"));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic"),
    );
    response
}

/// A request body that marks its connection as answering once the body has fully arrived.
struct Watched {
    body: Incoming,
    activity: Arc<Activity>,
}

impl http_body::Body for Watched {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.body.is_end_stream() {
            self.activity.answering.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A client socket that notes when it last moved bytes, which decides the connection to
/// close at the cap.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    epoch: Instant,
}

impl Tracked {
    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.last_ms.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        read
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The page a browser gets on `/`: what answers (`omen agent 0.1.0`) and a link to each of
/// `links` (`path`, what it gives), so no one meets a bare 404 there.
pub fn landing_page(title: &str, links: &[(&str, &str)]) -> Response<Body> {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let version = env!("CARGO_PKG_VERSION");
    let title = escape(title);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>omen {version}</p>\n<ul>\n"
    );
    for (path, what) in links {
        let path = escape(path);
        page.push_str(&format!(
            "<li><a href=\"{path}\">{path}</a>: {}</li>\n",
            escape(what)
        ));
    }
    page.push_str("</ul>\n</body></html>\n");
    let mut response = Response::new(Body::from(page));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Bytes;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on a free port with `limits`, its stats, and the sender that stops it.
    async fn start(
        limits: ServerLimits,
    ) -> (
        SocketAddr,
        Arc<ServerStats>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let router = Router::new()
            .route("/metrics", get(|| async { "up 1\n" }))
            .route("/echo", post(|body: Bytes| async move { body }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done\n"
                }),
            );
        let listener = bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(ServerStats::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            listener,
            router,
            limits,
            None,
            stats.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        (addr, stats, stop, served)
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer
    }

    const GET_METRICS: &str = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn idle_connections_over_the_cap_make_way_for_a_scrape() {
        let limits = ServerLimits {
            max_connections: 4,
            ..ServerLimits::default()
        };
        let (addr, stats, _stop, _) = start(limits).await;
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let scrape = tokio::time::timeout(Duration::from_secs(2), exchange(addr, GET_METRICS))
            .await
            .expect("a scrape is answered at once");
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        assert!(scrape.ends_with("up 1\n"), "{scrape}");
        // 21 connections through a cap of 4: 17 closed for the newer ones.
        tokio::time::timeout(Duration::from_secs(2), async {
            while stats.closed("limit") < 17 || stats.open() > 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the oldest connections are closed");
        // The first idle connection was closed by the server: it reads end of file.
        let mut byte = [0u8; 1];
        let read = idle[0].read(&mut byte).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn requests_being_answered_are_kept_and_a_newcomer_over_the_cap_closed() {
        let limits = ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        };
        let (addr, stats, _stop, _) = start(limits).await;
        let slow = "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let answering: Vec<_> = (0..2).map(|_| tokio::spawn(exchange(addr, slow))).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = exchange(addr, GET_METRICS).await;
        assert_eq!(refused, "", "closed without an answer");
        for answer in answering {
            let answer = answer.await.expect("no panic");
            assert!(answer.ends_with("done\n"), "{answer}");
        }
        assert_eq!(stats.closed("limit"), 1);
        // Once they are answered, the next scrape is.
        let scrape = exchange(addr, GET_METRICS).await;
        assert!(scrape.ends_with("up 1\n"), "{scrape}");
    }

    #[tokio::test]
    async fn a_request_head_sent_too_slowly_is_cut_off() {
        let limits = ServerLimits {
            header_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, stats, _stop, _) = start(limits).await;
        let started = Instant::now();
        let answer = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!answer.contains("up 1"), "{answer}");
        assert_eq!(stats.closed("header_timeout"), 1);
        assert_eq!(stats.open(), 0);
    }

    #[tokio::test]
    async fn a_body_that_stalls_gets_408_and_a_closed_connection() {
        let limits = ServerLimits {
            request_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, stats, _stop, _) = start(limits).await;
        let answer = exchange(
            addr,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert_eq!(stats.closed("request_timeout"), 1);
        // A whole request is still answered, within its time.
        let whole =
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let answer = exchange(addr, whole).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_returns() {
        let (addr, stats, stop, served) = start(ServerLimits::default()).await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        // One exchange on it first, so the server has surely accepted it.
        idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buffer = [0u8; 256];
        let read = idle.read(&mut buffer).await.expect("an answer");
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
        stop.send(()).expect("server running");
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve returns")
            .expect("no panic");
        assert_eq!(stats.open(), 0);
        let mut rendered = String::new();
        stats.render(&mut rendered, "omen_test", Format::Prometheus);
        assert!(rendered.contains("# TYPE omen_test_http_connections_accepted_total counter\n"));
        assert!(rendered.contains("omen_test_http_connections_accepted_total 1\n"));
        assert!(rendered.contains("omen_test_http_connections_closed_total{reason=\"limit\"} 0\n"));
        let mut open_metrics = String::new();
        stats.render(&mut open_metrics, "omen_test", Format::OpenMetrics);
        assert!(open_metrics.contains("# TYPE omen_test_http_connections_accepted counter\n"));
        assert!(open_metrics.contains("omen_test_http_connections_accepted_total 1\n"));
    }

    #[test]
    fn limits_read_from_yaml_and_refuse_zero() {
        let limits: ServerLimits =
            serde_yaml::from_str("{ max_connections: 64, request_timeout: 5s }").expect("valid");
        assert_eq!(limits.max_connections, 64);
        assert_eq!(limits.request_timeout, Duration::from_secs(5));
        assert_eq!(
            limits.header_timeout,
            ServerLimits::default().header_timeout
        );
        assert!(serde_yaml::from_str::<ServerLimits>("{ max_conns: 1 }").is_err());
        let none = ServerLimits {
            max_connections: 0,
            ..ServerLimits::default()
        };
        assert_eq!(none.check(), Err(("max_connections", "must be at least 1")));
    }
}

/// TLS and basic auth (`web`) on the server, with certificates made in the test.
#[cfg(all(test, feature = "pki"))]
mod tls_tests {
    use std::net::SocketAddr;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use std::path::{Path, PathBuf};

    use super::*;
    use crate::pki::{https_get, test_pki, TestPki};

    fn hash(password: &str) -> String {
        // The lowest cost: the tests check the protocol, not bcrypt's slowness.
        bcrypt::hash(password, 4).expect("a hash")
    }

    /// Serves `/metrics` with the web config at `path` until the test ends.
    async fn start(path: &Path) -> (SocketAddr, Arc<ServerStats>) {
        let web = Arc::new(WebConfig::load(path).expect("a valid web config"));
        let listener = bind("127.0.0.1:0".parse().expect("an address")).expect("a port");
        let addr = listener.local_addr().expect("bound");
        let stats = Arc::new(ServerStats::default());
        let router = Router::new().route("/metrics", get(|| async { "up 1\n" }));
        tokio::spawn(serve(
            listener,
            router,
            ServerLimits::default(),
            Some(web),
            stats.clone(),
            std::future::pending(),
        ));
        (addr, stats)
    }

    /// `GET /metrics` over TLS: the status, or the error that ended it.
    async fn status(
        addr: SocketAddr,
        pki: &TestPki,
        client_cert: bool,
        auth: Option<&str>,
    ) -> std::io::Result<u16> {
        let (pki, auth) = (pki.clone(), auth.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            https_get(addr, "/metrics", &pki, client_cert, auth.as_deref())
        })
        .await
        .expect("the client ran")
        .map(|(status, _)| status)
    }

    fn write_config(dir: &Path, pki: &TestPki, extra: &str) -> PathBuf {
        let path = dir.join("web.yml");
        let text = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: server.key\n{extra}",
            pki.server_cert.display()
        );
        std::fs::write(&path, text).expect("a web config");
        path
    }

    #[tokio::test]
    async fn tls_and_basic_auth_guard_every_request() {
        let dir = tempfile::tempdir().expect("a directory");
        let pki = test_pki(dir.path());
        let users = format!("basic_auth_users:\n  alice: '{}'\n", hash("s3cret"));
        let path = write_config(dir.path(), &pki, &users);
        let (addr, stats) = start(&path).await;
        let ok = status(addr, &pki, false, Some("alice:s3cret")).await;
        assert_eq!(ok.unwrap(), 200);
        // Again, from the remembered match.
        let ok = status(addr, &pki, false, Some("alice:s3cret")).await;
        assert_eq!(ok.unwrap(), 200);
        for auth in [None, Some("alice:wrong"), Some("bob:s3cret"), Some("alice")] {
            let refused = status(addr, &pki, false, auth).await;
            assert_eq!(refused.unwrap(), 401, "{auth:?}");
        }
        // Plain HTTP on the TLS port: no answer, and the handshake counted as failed.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        assert!(!String::from_utf8_lossy(&answer).contains("up 1"));
        assert_eq!(stats.closed("tls_handshake"), 1);
    }

    #[tokio::test]
    async fn client_certificates_are_required_when_asked() {
        let dir = tempfile::tempdir().expect("a directory");
        let pki = test_pki(dir.path());
        let extra = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n";
        let path = write_config(dir.path(), &pki, extra);
        let (addr, stats) = start(&path).await;
        assert_eq!(status(addr, &pki, true, None).await.unwrap(), 200);
        assert!(status(addr, &pki, false, None).await.is_err());
        assert_eq!(stats.closed("tls_handshake"), 1);
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_broken_one_kept_out() {
        let dir = tempfile::tempdir().expect("a directory");
        let pki = test_pki(dir.path());
        let users = |user: &str| format!("basic_auth_users:\n  {user}: '{}'\n", hash("pw"));
        let path = write_config(dir.path(), &pki, &users("alice"));
        let (addr, _) = start(&path).await;
        assert_eq!(
            status(addr, &pki, false, Some("alice:pw")).await.unwrap(),
            200
        );
        // Past the recheck interval, and a modification time that differs.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        write_config(dir.path(), &pki, &users("bob"));
        assert_eq!(
            status(addr, &pki, false, Some("bob:pw")).await.unwrap(),
            200
        );
        assert_eq!(
            status(addr, &pki, false, Some("alice:pw")).await.unwrap(),
            401
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        std::fs::write(&path, "basic_auth_users: [").unwrap();
        assert_eq!(
            status(addr, &pki, false, Some("bob:pw")).await.unwrap(),
            200
        );
    }
}
