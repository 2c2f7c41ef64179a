//! A unix-socket connection that the worker watches for reading only.
//!
//! Tokio registers every stream for readability and writability, edge-triggered. On a unix
//! socket the kernel signals "writable" each time the peer reads, so an answer the module reads
//! often wakes this worker once more, for nothing, just as the module goes on with the login and
//! needs the CPU (about 1.4 wakes per request instead of 1, measured with idle gaps between
//! requests). TCP signals writability only after a write found the buffer full.
//!
//! Answers are small and written at once. Only a write that finds the buffer full waits for
//! writability, on a duplicate of the socket registered for that alone, dropped once the write
//! went through.

use std::{
    io::{self, Read, Write},
    net::Shutdown,
    os::unix::net::UnixStream,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, unix::AsyncFd};

pub struct QuietUnixStream {
    socket: AsyncFd<UnixStream>,
    /// While a write waits for buffer space: the socket again, registered for writability.
    waiting: Option<AsyncFd<UnixStream>>,
}

impl QuietUnixStream {
    /// Takes over a connection that tokio accepted (`into_std` leaves it non-blocking).
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<Self> {
        let stream = stream.into_std()?;
        Ok(Self {
            socket: register(stream, Interest::READABLE)?,
            waiting: None,
        })
    }
}

fn register(stream: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: a `UnixStream` owns its file descriptor: it stays open, and `as_raw_fd` returns
    // it, until the stream is dropped, which happens only when the `AsyncFd` is.
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(io::Error::from)
}

impl AsyncRead for QuietUnixStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut ready = ready!(this.socket.poll_read_ready(cx))?;
            let room = buf.remaining();
            match ready.try_io(|socket| socket.get_ref().read(buf.initialize_unfilled())) {
                Ok(Ok(read)) => {
                    if read > 0 && read < room {
                        // The socket is drained: the next read would only find that out, with a
                        // system call. Edge-triggered, the next bytes make it ready again.
                        ready.clear_ready();
                    }
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for QuietUnixStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.waiting.is_none() {
            match this.socket.get_ref().write(data) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let copy = this.socket.get_ref().try_clone()?;
                    this.waiting = Some(register(copy, Interest::WRITABLE)?);
                }
                done => return Poll::Ready(done),
            }
        }
        loop {
            let Some(waiting) = this.waiting.as_ref() else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            let mut ready = ready!(waiting.poll_write_ready(cx))?;
            if let Ok(done) = ready.try_io(|_| this.socket.get_ref().write(data)) {
                drop(ready);
                this.waiting = None;
                return Poll::Ready(done);
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.get_ref().shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn run(test: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(20), test)
                    .await
                    .expect("done in time");
            });
    }

    #[test]
    fn a_write_larger_than_the_socket_buffer_waits_for_the_reader() {
        run(async {
            let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("pair");
            let mut ours = QuietUnixStream::new(ours).expect("registered");
            let data: Vec<u8> = (0..4 << 20).map(|i: u32| i.to_le_bytes()[0]).collect();
            let expected = data.clone();
            let reader = tokio::spawn(async move {
                // Not reading at first: the buffer fills, and the write has to wait.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut received = Vec::new();
                theirs.read_to_end(&mut received).await.expect("read");
                received
            });
            ours.write_all(&data).await.expect("write");
            assert!(ours.waiting.is_none(), "no write waits any more");
            ours.shutdown().await.expect("shutdown");
            assert!(reader.await.expect("reader") == expected);
        });
    }

    #[test]
    fn reads_what_arrives_after_a_drained_socket() {
        run(async {
            let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("pair");
            let mut ours = QuietUnixStream::new(ours).expect("registered");
            let mut buf = [0u8; 64];
            for message in [&b"first"[..], b"second", b"third"] {
                theirs.write_all(message).await.expect("write");
                // A short read: the socket is drained, and what comes next must still be seen.
                let read = ours.read(&mut buf).await.expect("read");
                assert_eq!(&buf[..read], message);
            }
            drop(theirs);
            assert_eq!(ours.read(&mut buf).await.expect("end"), 0);
        });
    }
}
