//! What a request's bodies tell its record as they stream: bytes, gRPC
//! messages (counted from the 5-byte length prefixes, never buffered), and
//! the `grpc-status` a response ends with. The response body carries the
//! record and emits it when the last frame has gone to the client (or when
//! the client leaves first: flag DC), so durations and sizes are the whole
//! exchange, as Istio's are. An opaque TCP connection's bytes are counted
//! into its series as they move ([`CountedIo`]).

use super::record::RequestRecord;
use crate::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Counts gRPC messages in a byte stream: each is a 1-byte flag, a 4-byte
/// big-endian length, then that many bytes.
#[derive(Debug, Default, Clone)]
pub struct GrpcFrames {
    /// Prefix bytes of the current message seen so far (0..5), and their value.
    prefix_seen: u8,
    prefix: [u8; 5],
    /// Bytes of the current message's payload still to come.
    remaining: u64,
}

impl GrpcFrames {
    /// Feeds `data`; returns how many messages started in it.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut started = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let need = 5 - self.prefix_seen as usize;
            let n = need.min(data.len());
            self.prefix[self.prefix_seen as usize..self.prefix_seen as usize + n].copy_from_slice(&data[..n]);
            self.prefix_seen += n as u8;
            data = &data[n..];
            if self.prefix_seen == 5 {
                started += 1;
                self.prefix_seen = 0;
                self.remaining = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]) as u64;
            }
        }
        started
    }
}

/// What the request body has carried so far (shared with the record).
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub bytes: AtomicU64,
    pub messages: AtomicU64,
}

/// A request body that counts what passes through it.
pub struct CountedRequest<B> {
    inner: B,
    counts: Arc<RequestCounts>,
    grpc: Option<GrpcFrames>,
}

impl<B> CountedRequest<B> {
    pub fn new(inner: B, counts: Arc<RequestCounts>, grpc: bool) -> Self {
        CountedRequest { inner, counts, grpc: grpc.then(GrpcFrames::default) }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for CountedRequest<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counts.bytes.fetch_add(data.len() as u64, Relaxed);
                if let Some(g) = &mut this.grpc {
                    this.counts.messages.fetch_add(g.feed(data), Relaxed);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body, carrying its request's record until the end.
pub struct RecordedResponse {
    inner: Body,
    record: Option<RequestRecord>,
    grpc: Option<GrpcFrames>,
}

impl RecordedResponse {
    pub fn new(inner: Body, record: RequestRecord) -> RecordedResponse {
        let grpc = record.grpc.then(GrpcFrames::default);
        RecordedResponse { inner, record: Some(record), grpc }
    }
}

impl HttpBody for RecordedResponse {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(r) = &mut this.record {
                    if let Some(data) = frame.data_ref() {
                        r.response_bytes += data.len() as u64;
                        if let Some(g) = &mut this.grpc {
                            r.response_messages += g.feed(data);
                        }
                    } else if let Some(t) = frame.trailers_ref() {
                        r.grpc_status = r.grpc_status.or_else(|| super::record::grpc_status(t));
                    }
                }
                if this.inner.is_end_stream() {
                    if let Some(r) = this.record.take() {
                        r.finish();
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut r) = this.record.take() {
                    r.upstream_reset();
                    r.finish();
                }
            }
            Poll::Ready(None) => {
                if let Some(r) = this.record.take() {
                    r.finish();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RecordedResponse {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            // hyper drops a body it knows is complete without polling it to the end;
            // anything else is a client that left mid-response.
            if !self.inner.is_end_stream() {
                r.client_left();
            }
            r.finish();
        }
    }
}

/// An opaque TCP connection's downstream side, its bytes counted as they
/// move (into the standard series when it has one) and totalled for the
/// connection's record, whatever way the relay ends.
pub struct CountedIo<T> {
    io: T,
    series: Option<super::standard::TcpBytes>,
    /// Read from and written to the downstream peer.
    pub received: u64,
    pub sent: u64,
}

impl<T> CountedIo<T> {
    pub fn new(io: T, series: Option<super::standard::TcpBytes>) -> CountedIo<T> {
        CountedIo { io, series, received: 0, sent: 0 }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.received += n;
            if let Some(s) = &self.series {
                s.received(n);
            }
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.sent += n as u64;
            if let Some(s) = &self.series {
                s.sent(n as u64);
            }
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend(len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    #[test]
    fn grpc_messages_are_counted_however_the_stream_is_cut() {
        let stream: Vec<u8> = [message(3), message(0), message(300), message(1)].concat();
        for chunk in [1, 2, 4, 5, 6, 7, 64, 1000] {
            let mut g = GrpcFrames::default();
            let n: u64 = stream.chunks(chunk).map(|c| g.feed(c)).sum();
            assert_eq!(n, 4, "chunks of {chunk}");
        }
        // A message cut inside its prefix is counted once its prefix is whole.
        let mut g = GrpcFrames::default();
        assert_eq!(g.feed(&[0, 0, 0]), 0);
        assert_eq!(g.feed(&[0, 2, 9]), 1);
        assert_eq!(g.feed(&[9]), 0);
        assert_eq!(g.feed(&message(0)), 1);
    }
}
