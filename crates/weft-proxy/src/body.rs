//! Bodies and byte streams the request path passes around: one boxed body
//! type for everything the proxy sends, and the trait a downstream
//! connection (plain TCP or mesh TLS terminated here) satisfies.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;

/// Every body the proxy sends: a client's, an upstream's, or its own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body of these bytes.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn empty_body() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// A downstream connection: plain TCP, or mesh TLS terminated here.
pub trait Downstream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Downstream for T {}
