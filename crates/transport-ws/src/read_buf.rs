//! An adaptive read buffer below tungstenite.
//!
//! tungstenite reads at most `read_buffer_size` bytes per `read` call, and allocates (and
//! zero-fills) that much per connection up front. A small size keeps idle connections cheap but
//! costs one system call per `read_buffer_size` bytes of a large message; a large one costs
//! memory on every connection. [`AdaptiveRead`] sits between the socket and tungstenite and
//! keeps both:
//!
//! * While reads are small, it reads straight into tungstenite's buffer: no buffer of its own,
//!   no copy.
//! * When a read fills the caller's buffer (more is likely waiting), the next reads go into a
//!   buffer of its own, [`MIN_AHEAD`] bytes at first, doubled each time a read fills it, up to
//!   [`MAX_AHEAD`]; tungstenite's small reads are then served from memory.
//! * Two reads in a row that would have fit the caller's buffer switch back to direct reads.
//! * The buffer is freed whenever the socket has nothing more to read (a read returns
//!   `Pending` with the buffer empty), so an idle connection holds none of it.
//!
//! The buffer is filled without being zeroed first (`tokio_util::io::poll_read_buf`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// First size of the read-ahead buffer: a 16 KiB message (plus its header) in one read.
pub(crate) const MIN_AHEAD: usize = 16 * 1024 + 16;

/// Largest read-ahead buffer.
pub(crate) const MAX_AHEAD: usize = 64 * 1024;

/// Smallest caller buffer whose filling by a direct read starts reading ahead (tungstenite
/// sometimes asks for a few bytes only, to complete a frame header).
const MIN_FILL_TO_GROW: usize = 1024;

/// Reads before going back to direct reads, when each would have fit the caller's buffer.
const SMALL_READS_TO_SHRINK: u8 = 2;

/// A socket whose reads adapt their size to the traffic (see the module docs). Writes pass
/// through unchanged.
#[derive(Debug)]
pub(crate) struct AdaptiveRead<S> {
    inner: S,
    /// Bytes read ahead of the caller. Unallocated while idle.
    ahead: BytesMut,
    /// Size of the next read-ahead; 0 for direct reads.
    next: usize,
    /// Consecutive read-aheads that would have fit the caller's buffer.
    small: u8,
}

impl<S> AdaptiveRead<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            ahead: BytesMut::new(),
            next: 0,
            small: 0,
        }
    }

    /// Bytes held by the read-ahead buffer now (allocated capacity).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.ahead.capacity()
    }

    /// Moves read-ahead bytes into `out`.
    fn drain_into(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.ahead.len().min(out.remaining());
        out.put_slice(&self.ahead[..n]);
        self.ahead.advance(n);
    }

    /// Adjusts the read-ahead size after a read of `n` bytes into a buffer of `size` for a
    /// caller whose buffer had room for `wanted`.
    fn adapt(&mut self, n: usize, size: usize, wanted: usize) {
        if n >= size {
            self.next = (self.next.max(MIN_AHEAD) * 2).min(MAX_AHEAD);
            self.small = 0;
        } else if n <= wanted {
            self.small += 1;
            if self.small >= SMALL_READS_TO_SHRINK {
                self.next = 0;
                self.small = 0;
            }
        } else {
            self.small = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AdaptiveRead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.ahead.is_empty() {
            this.drain_into(out);
            return Poll::Ready(Ok(()));
        }
        let wanted = out.remaining();
        if this.next == 0 || wanted >= this.next {
            ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
            if wanted >= MIN_FILL_TO_GROW && out.remaining() == 0 {
                // The read filled the caller's buffer: more is probably waiting.
                this.next = this.next.max(MIN_AHEAD);
            }
            return Poll::Ready(Ok(()));
        }
        this.ahead.clear();
        this.ahead.reserve(this.next);
        let size = this.ahead.capacity();
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.ahead) {
            Poll::Pending => {
                // Nothing more to read now: free the buffer while the connection waits.
                this.ahead = BytesMut::new();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(n)) => {
                this.adapt(n, size, wanted);
                // n == 0 is the end of the stream: `out` stays empty, as the caller expects.
                this.drain_into(out);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AdaptiveRead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads exactly `n` bytes in calls of at most `chunk` bytes, as tungstenite does.
    async fn read_chunked(
        reader: &mut AdaptiveRead<tokio::io::DuplexStream>,
        n: usize,
        chunk: usize,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; chunk];
        while got.len() < n {
            let k = reader.read(&mut buf).await.expect("read");
            assert!(k > 0, "unexpected end of stream");
            got.extend_from_slice(&buf[..k]);
        }
        got
    }

    #[tokio::test]
    async fn grows_for_large_messages_and_frees_when_idle() {
        let (mut peer, ours) = tokio::io::duplex(256 * 1024);
        let mut reader = AdaptiveRead::new(ours);
        let message: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..3 {
            peer.write_all(&message).await.expect("write");
            let got = read_chunked(&mut reader, message.len(), 4096).await;
            assert_eq!(got, message);
        }
        assert!(reader.next >= MIN_AHEAD, "read-ahead after large messages");
        // Nothing to read: the poll returns Pending and the buffer is freed.
        let mut buf = [0u8; 16];
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), reader.read(&mut buf))
                .await
                .is_err()
        );
        assert_eq!(reader.held(), 0);
    }

    #[tokio::test]
    async fn small_reads_go_back_to_direct() {
        let (mut peer, ours) = tokio::io::duplex(256 * 1024);
        let mut reader = AdaptiveRead::new(ours);
        peer.write_all(&vec![7u8; 20_000]).await.expect("write");
        let _ = read_chunked(&mut reader, 20_000, 4096).await;
        assert!(reader.next > 0);
        for i in 0..4u8 {
            peer.write_all(&[i; 20]).await.expect("write");
            assert_eq!(read_chunked(&mut reader, 20, 4096).await, vec![i; 20]);
        }
        assert_eq!(reader.next, 0, "back to direct reads");
    }

    #[tokio::test]
    async fn end_of_stream_passes_through() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut reader = AdaptiveRead::new(ours);
        reader.next = MIN_AHEAD; // force a read-ahead
        peer.write_all(b"abc").await.expect("write");
        drop(peer);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"abc");
    }
}
