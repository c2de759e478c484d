//! A stream that gives up when the peer goes silent.
//!
//! hyper drives HTTP over a raw stream and has no timeouts of its own, so a
//! service that stops answering in the middle of a body (a KAS stalled during an
//! upload or a download) would hold the request, and with it the client's SMTP or
//! POP3 session, for ever. [`Conn`](super::Conn) bounds every read; this does the
//! same for a stream handed to hyper. The bound is on silence, not on the whole
//! exchange: a 700 MiB upload takes as long as it takes while bytes move.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, whose reads and writes fail with `TimedOut` when one of them has
/// waited `timeout` without any of them making progress.
pub struct IdleTimeout<S> {
    inner: S,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether an operation is waiting since the last progress (the timer runs
    /// from when the waiting began).
    waiting: bool,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> IdleTimeout<S> {
        IdleTimeout {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
        }
    }

    /// After an operation of the inner stream: bytes moved (`moved`) stop the
    /// clock, waiting starts it (once), and a wait longer than the timeout is an
    /// error. A flush that has nothing to do is no progress: counting it would
    /// restart the clock at every wake-up and a silent peer would never time out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(done) = &r {
            if done.as_ref().is_ok_and(moved) {
                self.waiting = false;
            }
            return r;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.timeout;
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer was silent for {} s", self.timeout.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        // a read that is ready has data or the end of the stream: either moves
        this.watch(cx, r, |_| true)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, r, |n| *n > 0)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, r, |_| false)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, r, |_| false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn what_arrives_is_read_and_then_silence_times_out() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = IdleTimeout::new(a, Duration::from_millis(100));
        b.write_all(b"xyz").await.unwrap();
        let mut got = [0u8; 3];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"xyz");
        // the peer keeps the stream open and sends nothing
        let e = s.read_exact(&mut got).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(b);
    }

    /// As hyper does: a flush with nothing to flush between the waits for data.
    #[tokio::test]
    async fn flushes_that_move_nothing_do_not_restart_the_clock() {
        let (a, _b) = tokio::io::duplex(64);
        let mut s = IdleTimeout::new(a, Duration::from_millis(100));
        let mut got = [0u8; 1];
        let e = loop {
            s.flush().await.unwrap();
            let r = tokio::time::timeout(Duration::from_millis(30), s.read(&mut got)).await;
            if let Ok(r) = r {
                break r.unwrap_err();
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
