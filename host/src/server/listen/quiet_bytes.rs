//! A connection that ends itself after a stretch with no bytes moving in
//! either direction: a client that stops mid-request, or stops reading its
//! answer, would otherwise hold its file descriptor for as long as it likes.
//! Every byte resets it, so it does not stop a client that trickles: the
//! header deadline and `activity` do that.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct QuietBytes<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> QuietBytes<S> {
    pub fn new(inner: S, idle: Duration) -> QuietBytes<S> {
        QuietBytes {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Called when the inner stream is not ready: has the quiet lasted too long?
    fn quiet_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no bytes in either direction for {:?}", self.idle),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for QuietBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.quiet_too_long(cx) => Poll::Ready(Err(self.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for QuietBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                self.touch();
                Poll::Ready(Ok(written))
            }
            Poll::Pending if self.quiet_too_long(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Under tokio's paused clock: the 100 ms gaps and the 200 ms limit are
    /// exact, not raced against a loaded machine.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_times_out_and_a_busy_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = QuietBytes::new(server, Duration::from_millis(200));
        let mut client = client;
        let talker = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        let mut byte = [0u8; 1];
        for _ in 0..5 {
            server.read_exact(&mut byte).await.unwrap();
        }
        let _client = talker.await.unwrap();
        let quiet = server.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(quiet.kind(), io::ErrorKind::TimedOut);
    }
}
