//! Which HTTP a connection to a `protocol: http2` port speaks. Such a port serves HTTP/2 (prior
//! knowledge, h2c) and, for clients that only know HTTP/1.1, a well-formed HTTP/1.x request
//! line. Anything else is HTTP/2 and has to start with the connection preface: an invalid
//! preface closes the connection (RFC 9113 §3.4) instead of getting an HTTP/1.1 `400`.
//!
//! The bytes read to decide are replayed to the HTTP server by [`Prefixed`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What the first line said.
#[derive(Debug, PartialEq, Eq)]
pub enum Speaks {
    /// A well-formed HTTP/1.0 or HTTP/1.1 request line.
    Http1,
    /// Anything else: served as HTTP/2 only, whose preface check closes what is not HTTP/2.
    Http2,
}

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `method SP request-target SP HTTP/1.x CRLF` (a bare LF too), after optional empty lines.
pub fn request_line(bytes: &[u8]) -> Option<Speaks> {
    let start = bytes.iter().position(|b| *b != b'\r' && *b != b'\n')?;
    let rest = &bytes[start..];
    let end = rest.iter().position(|b| *b == b'\n')?;
    let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Some(Speaks::Http2);
    };
    let ok = !method.is_empty()
        && method.iter().all(|b| tchar(*b))
        && !target.is_empty()
        && target.iter().all(|b| b.is_ascii_graphic())
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0");
    Some(if ok { Speaks::Http1 } else { Speaks::Http2 })
}

/// Reads until the first line is complete (or `limit` bytes, the peer's end, or `timeout`) and
/// says what it is; the bytes read come back for [`Prefixed`]. A line longer than `limit` is
/// left to the HTTP/1 parser (which answers it), a connection that ends or stalls first to
/// HTTP/2 (which closes it).
pub async fn first_line<S: AsyncRead + Unpin>(stream: &mut S, read_before: Vec<u8>, limit: usize, timeout: Duration) -> (Speaks, Vec<u8>) {
    let mut buf = read_before;
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(s) = request_line(&buf) {
                return s;
            }
            if buf.len() >= limit {
                return Speaks::Http1;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Speaks::Http2,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let speaks = tokio::time::timeout(timeout, read).await.unwrap_or(Speaks::Http2);
    (speaks, buf)
}

/// A stream whose first bytes were already read: they are read again, then the socket.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed { prefix, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(out.remaining());
            out.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(request_line(b"GET / HTTP/1.1\r\n"), Some(Speaks::Http1));
        assert_eq!(request_line(b"\r\nPOST /a?b=c HTTP/1.0\n"), Some(Speaks::Http1));
        assert_eq!(request_line(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(Speaks::Http2));
        assert_eq!(request_line(b"INVALID CONNECTION PREFACE\r\n\r\n"), Some(Speaks::Http2));
        assert_eq!(request_line(b"GET /a b HTTP/1.1\r\n"), Some(Speaks::Http2));
        assert_eq!(request_line(b"GET / HTTP/1.1"), None);
        assert_eq!(request_line(b""), None);
    }
}
