//! A client connection as the HTTP dispatcher sees it: unix, TCP or TLS underneath; it notes
//! when each request starts (for the whole-request deadline) and closes lingering.

use std::{
    cell::Cell,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::unix::QuietUnixStream;

/// Bytes read and thrown away after the response when a client is still sending (lingering
/// close, RFC 9112 section 9.6), so that it reads the answer instead of a reset.
const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;
/// How long a closing connection may linger, draining the request. actix-http bounds its own
/// shutdown only after a keep-alive timeout, so [`Conn`] bounds the drain itself.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// When the request being received began to arrive, for the whole-request deadline.
#[derive(Debug, Clone, Default)]
pub struct RequestClock(Rc<Cell<Option<Instant>>>);

impl RequestClock {
    /// When the first byte of the current request arrived, if known.
    #[must_use]
    pub fn started(&self) -> Option<Instant> {
        self.0.get()
    }
}

/// What a connection runs over, for routes that trust unix sockets (whose file mode decides
/// who may connect) more than TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tcp,
}

pub enum Stream {
    Unix(QuietUnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A client connection: marks when each request starts, and closes lingering.
pub struct Conn {
    stream: Stream,
    pub clock: RequestClock,
    /// `None` until shutdown starts.
    linger: Option<Linger>,
}

/// A closing connection: the bytes drained so far, and when draining ends.
struct Linger {
    drained: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Conn {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            clock: RequestClock::default(),
            linger: None,
        }
    }

    pub fn transport(&self) -> Transport {
        match self.stream {
            Stream::Unix(_) => Transport::Unix,
            Stream::Tcp(_) | Stream::Tls(_) => Transport::Tcp,
        }
    }

    fn stream(self: Pin<&mut Self>) -> Pin<&mut (dyn AsyncReadWrite + Unpin)> {
        let this = self.get_mut();
        match &mut this.stream {
            Stream::Unix(s) => Pin::new(s),
            Stream::Tcp(s) => Pin::new(s),
            Stream::Tls(s) => Pin::new(s.as_mut()),
        }
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncReadWrite for T {}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(self.as_mut().stream().poll_read(cx, buf))?;
        if buf.filled().len() > before && self.clock.0.get().is_none() {
            self.clock.0.set(Some(Instant::now()));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // An answer is on its way: the next bytes that arrive start the next request.
        self.clock.0.set(None);
        self.as_mut().stream().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    /// Sends the end of the stream, then reads and discards what the client still sends until
    /// it closes too: at most [`LINGER_MAX_BYTES`] for at most [`DISCONNECT_TIMEOUT`]. Closing
    /// with unread data would make the kernel reset the connection, and a client that writes its
    /// whole body before reading (413, 401, 408) would see the reset instead of the answer.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.linger.is_none() {
            ready!(self.as_mut().stream().poll_shutdown(cx))?;
            self.linger = Some(Linger {
                drained: 0,
                deadline: Box::pin(tokio::time::sleep(DISCONNECT_TIMEOUT)),
            });
        }
        loop {
            let Some(linger) = self.linger.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if linger.drained >= LINGER_MAX_BYTES || linger.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut scratch = [0u8; 8192];
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(self.as_mut().stream().poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    if let Some(linger) = self.linger.as_mut() {
                        linger.drained += buf.filled().len();
                    }
                }
                // The client closed, or the connection broke: either way it is done.
                Ok(()) | Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}
