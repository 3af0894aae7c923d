//! Request bodies the proxy may need to send more than once (retries,
//! mirrors): small, complete bodies are kept in memory; anything else is
//! streamed once, with nothing that was read ahead lost.

use crate::body::{empty_body, Body};
use crate::local_reply::{Flag, LocalReply};
use http_body_util::BodyExt;

/// Requests at most this large are kept so they can be replayed by a retry.
const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// A request body as it came, or read into memory to be sent more than once.
pub enum RequestBody {
    Streaming(Body),
    Buffered(bytes::Bytes),
}

/// How long a body of unknown length (gRPC sends no content-length) is read
/// ahead to see whether it is small and complete: a unary call's message
/// arrives with its end of stream; a stream that pauses goes on unbuffered.
const READ_AHEAD: std::time::Duration = std::time::Duration::from_millis(5);

/// The longest a body of known length is waited for to be kept for retries
/// or mirrors when the route sets no timeout: a client that trickles its
/// body is then sent on unbuffered, never holding memory and a slot forever.
pub const MAX_BUFFER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl RequestBody {
    /// Reads the body into memory when it is small (at most
    /// [`MAX_REPLAY_BYTES`]) and complete: known-length bodies are waited
    /// for up to `wait` (the route timeout, or [`MAX_BUFFER_WAIT`]), others
    /// read ahead for [`READ_AHEAD`]. `None` means it can be sent only once
    /// (what was read ahead is sent first, nothing is lost).
    pub async fn replayable(&mut self, wait: Option<std::time::Duration>) -> Result<Option<bytes::Bytes>, LocalReply> {
        let body = match self {
            RequestBody::Buffered(b) => return Ok(Some(b.clone())),
            RequestBody::Streaming(body) => body,
        };
        let hint = hyper::body::Body::size_hint(body);
        if hint.lower() > MAX_REPLAY_BYTES {
            return Ok(None);
        }
        let wait = if hint.exact().is_none() { READ_AHEAD } else { wait.unwrap_or(MAX_BUFFER_WAIT).min(MAX_BUFFER_WAIT) };
        let deadline = Some(tokio::time::Instant::now() + wait);
        let mut rest = std::mem::replace(body, empty_body());
        let mut frames: Vec<hyper::body::Frame<bytes::Bytes>> = Vec::new();
        let mut size = 0u64;
        let complete = loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rest.frame()).await {
                    Ok(next) => next,
                    Err(_) => break false,
                },
                None => rest.frame().await,
            };
            match next {
                None => break true,
                Some(Err(e)) => return Err(LocalReply::new(400, Flag::DownstreamConnectionTermination, format!("request body: {e}"))),
                Some(Ok(frame)) => {
                    size += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                    let trailers = frame.is_trailers();
                    frames.push(frame);
                    if size > MAX_REPLAY_BYTES || trailers {
                        break false;
                    }
                }
            }
        };
        if complete {
            let mut all = bytes::BytesMut::with_capacity(size as usize);
            for f in frames {
                if let Ok(d) = f.into_data() {
                    all.extend_from_slice(&d);
                }
            }
            let bytes = all.freeze();
            *self = RequestBody::Buffered(bytes.clone());
            return Ok(Some(bytes));
        }
        // Not replayable: what was read goes first, then the rest as it comes.
        use tokio_stream::StreamExt;
        let read = tokio_stream::iter(frames.into_iter().map(Ok::<_, hyper::Error>));
        let stream = read.chain(http_body_util::BodyStream::new(rest));
        *self = RequestBody::Streaming(http_body_util::StreamBody::new(stream).boxed());
        Ok(None)
    }
}

