//! Accepting and serving connections.
//!
//! Each worker is a thread with its own event loop and its own copy of every listening socket;
//! the kernel hands each new connection to one of them. The daemon accepts itself rather than
//! through actix-server, which unlinks the path of a unix listener whenever it stops listening
//! on it (on every stop, and on an `accept` error such as EMFILE) — for a socket that systemd
//! owns, that leaves a running daemon nobody can reach. Here a listening socket is only ever
//! closed, and an `accept` that fails is retried with a growing pause.

use std::{
    cell::Cell,
    io,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_http::HttpServiceBuilder;
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, map_config};
use actix_web::{App, dev::AppConfig, rt::net::TcpStream};
use tokio::{
    net::{TcpListener, UnixListener, UnixStream},
    sync::{Notify, watch},
};
use tokio_rustls::TlsAcceptor;

use super::{
    Shared, configure,
    conn::{Conn, DISCONNECT_TIMEOUT, Stream},
    unix::QuietUnixStream,
};
use crate::systemd::Listener;

/// How long a stop waits for connections to finish before closing them.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between `accept` attempts while they fail (EMFILE, ENOBUFS, ...).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What every worker needs to serve.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The running workers; [`Workers::stop`] ends them.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers on copies of `listeners` and waits until each serves.
    pub async fn start(
        count: usize,
        listeners: &[(String, Listener)],
        shared: &Arc<Shared>,
        settings: &WorkerSettings,
    ) -> io::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let copies = listeners
                .iter()
                .map(|(name, listener)| Ok((name.clone(), listener.try_clone()?)))
                .collect::<io::Result<Vec<_>>>()?;
            let shared = shared.clone();
            let settings = settings.clone();
            let stopped = stopped.clone();
            let ready = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || worker(copies, &shared, &settings, stopped, &ready))?;
            threads.push(thread);
        }
        drop(ready_tx);
        let workers = Self { stop, threads };
        for _ in 0..count {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(err)) => {
                    workers.stop().await;
                    return Err(err);
                }
                None => {
                    workers.stop().await;
                    return Err(io::Error::other("a worker thread ended at start-up"));
                }
            }
        }
        Ok(workers)
    }

    /// Stops accepting, lets connections finish for a bounded time, and waits for the threads.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    }
}

/// File descriptors kept free for everything but client connections (listeners, event loops,
/// the journal, reloads).
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to what `connections` need, within the hard limit, and warns
/// when even that is too low: `accept` then fails with EMFILE before the connection cap is
/// reached, and pauses until connections close.
pub fn fit_file_limit(connections: usize) {
    let needed = connections as u64 + RESERVED_FDS;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < needed && limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: needed.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own. It fails harmlessly where a seccomp filter
        // forbids it (the shipped unit sets LimitNOFILE= instead).
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit = raised;
        }
    }
    if limit.rlim_cur < needed {
        tracing::warn!(
            open_file_limit = limit.rlim_cur,
            needed,
            "the open-file limit is below server.workers × server.max_connections plus {RESERVED_FDS}; \
             with that many clients, accept pauses until connections close (raise LimitNOFILE=)"
        );
    }
}

fn worker(
    listeners: Vec<(String, Listener)>,
    shared: &Arc<Shared>,
    settings: &WorkerSettings,
    stopped: watch::Receiver<bool>,
    ready: &tokio::sync::mpsc::UnboundedSender<io::Result<()>>,
) {
    let runtime = match actix_web::rt::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    runtime.block_on(async move {
        let service = match http_service(shared.clone(), settings.request_timeout).await {
            Ok(service) => Rc::new(service),
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let mut sockets = Vec::with_capacity(listeners.len());
        for (name, listener) in listeners {
            let socket = match listener {
                Listener::Unix(l) => UnixListener::from_std(l).map(Socket::Unix),
                Listener::Tcp(l) => TcpListener::from_std(l).map(Socket::Tcp),
            };
            match socket {
                Ok(socket) => sockets.push((name, socket)),
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return;
                }
            }
        }
        let context = Rc::new(Worker {
            service,
            tls: settings.tls.clone().map(TlsAcceptor::from),
            request_timeout: settings.request_timeout,
            slots: Rc::new(Slots::new(settings.max_connections)),
        });
        let loops: Vec<_> = sockets
            .into_iter()
            .map(|(name, socket)| {
                actix_web::rt::spawn(accept_loop(name, socket, context.clone(), stopped.clone()))
            })
            .collect();
        let _ = ready.send(Ok(()));
        for accepting in loops {
            let _ = accepting.await;
        }
        // The listening sockets are closed (never unlinked); let the connections finish.
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while context.slots.in_use() > 0 && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// The actix-web application as an HTTP/1.1 service over [`Conn`].
async fn http_service(
    shared: Arc<Shared>,
    request_timeout: Duration,
) -> io::Result<
    impl Service<(Conn, Option<std::net::SocketAddr>), Response = (), Error = impl std::fmt::Debug>,
> {
    let app = App::new().configure(configure(shared));
    let factory = HttpServiceBuilder::<Conn, _>::default()
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
        .keep_alive(Duration::from_secs(30))
        .on_connect_ext(|conn: &Conn, extensions| {
            extensions.insert(conn.clock.clone());
            extensions.insert(conn.transport());
        })
        .h1(map_config(
            app.into_factory()
                .map_err(|err: actix_web::Error| err.error_response()),
            |()| AppConfig::default(),
        ));
    factory
        .new_service(())
        .await
        .map_err(|()| io::Error::other("cannot build the HTTP service"))
}

struct Worker<S> {
    service: Rc<S>,
    tls: Option<TlsAcceptor>,
    request_timeout: Duration,
    slots: Rc<Slots>,
}

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Socket {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Self::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
            Self::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        }
    }
}

/// Errors that concern one connection only: the next `accept` may succeed at once.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

async fn accept_loop<S>(
    name: String,
    socket: Socket,
    context: Rc<Worker<S>>,
    mut stopped: watch::Receiver<bool>,
) where
    S: Service<(Conn, Option<std::net::SocketAddr>), Response = ()> + 'static,
    S::Error: std::fmt::Debug,
{
    let mut backoff: Option<Duration> = None;
    loop {
        let slot = tokio::select! {
            slot = Slots::acquire(&context.slots) => slot,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok(stream) => {
                if backoff.take().is_some() {
                    tracing::info!(listen = %name, "accepting connections again");
                }
                actix_web::rt::spawn(serve(stream, slot, context.clone()));
            }
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                let delay = backoff.map_or(Duration::from_millis(20), |d| {
                    (d * 2).min(MAX_ACCEPT_BACKOFF)
                });
                if backoff.is_none() {
                    tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        listen = %name,
                        open = context.slots.in_use(),
                        "cannot accept a connection; retrying with a pause until it works \
                         (on \"Too many open files\", raise LimitNOFILE= or lower server.max_connections)"
                    );
                }
                backoff = Some(delay);
                drop(slot);
                tokio::select! {
                    () = actix_web::rt::time::sleep(delay) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

async fn serve<S>(accepted: Accepted, _slot: Slot, context: Rc<Worker<S>>)
where
    S: Service<(Conn, Option<std::net::SocketAddr>), Response = ()>,
    S::Error: std::fmt::Debug,
{
    let stream = match (accepted, &context.tls) {
        (Accepted::Unix(s), _) => match QuietUnixStream::new(s) {
            Ok(s) => Stream::Unix(s),
            Err(err) => {
                tracing::info!(
                    error = &err as &dyn std::error::Error,
                    "cannot serve a unix connection"
                );
                return;
            }
        },
        (Accepted::Tcp(s), None) => Stream::Tcp(s),
        (Accepted::Tcp(s), Some(acceptor)) => {
            let peer = s.peer_addr().ok();
            match actix_web::rt::time::timeout(context.request_timeout, acceptor.accept(s)).await {
                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                Ok(Err(err)) => {
                    tracing::info!(error = &err as &dyn std::error::Error, peer = ?peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = ?peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(err) = context.service.call((Conn::new(stream), None)).await {
        tracing::debug!(error = ?err, "connection ended with an error");
    }
}

/// Open connections of one worker, bounded by `server.max_connections`.
struct Slots {
    free: Cell<usize>,
    max: usize,
    freed: Notify,
}

/// One open connection; dropping it frees the slot.
struct Slot(Rc<Slots>);

impl Slots {
    fn new(max: usize) -> Self {
        Self {
            free: Cell::new(max),
            max,
            freed: Notify::new(),
        }
    }

    fn in_use(&self) -> usize {
        self.max - self.free.get()
    }

    async fn acquire(slots: &Rc<Self>) -> Slot {
        loop {
            let free = slots.free.get();
            if free > 0 {
                slots.free.set(free - 1);
                return Slot(slots.clone());
            }
            slots.freed.notified().await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.free.set(self.0.free.get() + 1);
        self.0.freed.notify_one();
    }
}
