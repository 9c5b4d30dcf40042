//! Moving HTTP/1.1 bodies between the client and a backend, in the framing each side reads.
//!
//! Owns the copy loops (exactly N bytes, chunked as is or payload only, until close, re-chunked
//! until close) and which side a failure belongs to: each loop is told its direction, so a read
//! that fails is the source's failure and a write that fails the sink's. Does not own choosing
//! the framing (`response`, `request`) or the chunked grammar (`chunked`).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::chunked::ChunkedDecoder;
use crate::proxy::error::{Error, Kind, Result};

/// Room made for streaming a body, where fewer, larger reads pay off.
const BODY_CHUNK: usize = 64 * 1024;

/// Which way a body flows: says whose failure a failed read or write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to backend.
    Request,
    /// Backend to client.
    Response,
}

impl Direction {
    /// The failure of the side bytes are read from.
    fn source_lost(self, e: std::io::Error) -> Error {
        match self {
            Direction::Request => Error::client(e),
            Direction::Response => Error::io(Kind::UpstreamLost, e),
        }
    }

    /// The failure of the side bytes are written to.
    fn sink_lost(self, e: std::io::Error) -> Error {
        match self {
            Direction::Request => Error::io(Kind::UpstreamLost, e),
            Direction::Response => Error::client(e),
        }
    }

    /// A body that breaks its chunked framing.
    fn bad_chunking(self) -> Error {
        match self {
            Direction::Request => Error::new(Kind::BadRequestBody),
            Direction::Response => Error::new(Kind::BadResponse),
        }
    }
}

/// Write all of `data` and push it out: TLS may hold the tail of a write back until flushed,
/// and nobody would flush it while we wait for the next request.
pub async fn send<W: AsyncWrite + Unpin>(dst: &mut W, data: &[u8]) -> std::io::Result<()> {
    dst.write_all(data).await?;
    dst.flush().await
}

/// Read more into `buf`; `Ok(0)` at the end of the stream. A read that takes longer than
/// `idle` is the source's failure.
async fn read_more<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut BytesMut,
    idle: Duration,
    dir: Direction,
) -> Result<usize> {
    buf.reserve(BODY_CHUNK);
    match timeout(idle, src.read_buf(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(dir.source_lost(e)),
        Err(_) => Err(dir.source_lost(std::io::ErrorKind::TimedOut.into())),
    }
}

/// `read_more` where the end of the stream is a failure: the body is not complete.
async fn read_some<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut BytesMut,
    idle: Duration,
    dir: Direction,
) -> Result<()> {
    match read_more(src, buf, idle, dir).await? {
        0 => Err(dir.source_lost(std::io::ErrorKind::UnexpectedEof.into())),
        _ => Ok(()),
    }
}

async fn write<W: AsyncWrite + Unpin>(dst: &mut W, data: &[u8], dir: Direction) -> Result<()> {
    send(dst, data).await.map_err(|e| dir.sink_lost(e))
}

/// Copy exactly `n` body bytes: first those already in `buf`, then from `src`. Bytes beyond
/// the body stay in `buf`.
pub async fn copy_exact<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    mut n: u64,
    idle: Duration,
    dir: Direction,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if !buf.is_empty() {
            let take = (buf.len() as u64).min(n) as usize;
            write(dst, &buf[..take], dir).await?;
            buf.advance(take);
            n -= take as u64;
        }
        if n == 0 {
            return Ok(());
        }
        read_some(src, buf, idle, dir).await?;
    }
}

/// How `copy_chunked` passes a chunked body on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunks {
    /// As received (validated).
    Keep,
    /// Payload only, for a client that cannot read chunks (HTTP/1.0).
    Strip,
}

/// Relay a chunked body, validated by `decoder` (which may already be part-way through it).
/// With `max`, a payload larger than that is `BodyTooLarge`.
#[allow(clippy::too_many_arguments)] // one copy loop, each argument a different concern
pub async fn copy_chunked<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    mut decoder: ChunkedDecoder,
    chunks: Chunks,
    max: Option<u64>,
    idle: Duration,
    dir: Direction,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut payload = BytesMut::new();
    let mut total = 0u64;
    loop {
        if !buf.is_empty() {
            let progress = decoder
                .feed(buf, |data| {
                    total += data.len() as u64;
                    if chunks == Chunks::Strip {
                        payload.extend_from_slice(data)
                    }
                })
                .map_err(|_| dir.bad_chunking())?;
            if max.is_some_and(|m| total > m) {
                return Err(Error::new(Kind::BodyTooLarge));
            }
            match chunks {
                Chunks::Strip => {
                    write(dst, &payload, dir).await?;
                    payload.clear();
                }
                Chunks::Keep => write(dst, &buf[..progress.consumed], dir).await?,
            }
            buf.advance(progress.consumed);
            if progress.done {
                return Ok(());
            }
        }
        read_some(src, buf, idle, dir).await?;
    }
}

/// Relay a response body that ends when the backend closes, unchanged.
pub async fn copy_until_close<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    idle: Duration,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let dir = Direction::Response;
    loop {
        write(dst, buf, dir).await?;
        buf.clear();
        if read_more(src, buf, idle, dir).await? == 0 {
            return Ok(());
        }
    }
}

/// Relay a response body that ends when the backend closes as chunks, so the client
/// connection can stay open.
pub async fn rechunk_until_close<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    idle: Duration,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let dir = Direction::Response;
    let mut size_line = BytesMut::with_capacity(20);
    loop {
        if !buf.is_empty() {
            size_line.clear();
            let _ = std::fmt::Write::write_fmt(
                &mut super::request::Fmt(&mut size_line),
                format_args!("{:x}\r\n", buf.len()),
            );
            write(dst, &size_line, dir).await?;
            write(dst, buf, dir).await?;
            write(dst, b"\r\n", dir).await?;
            buf.clear();
        }
        if read_more(src, buf, idle, dir).await? == 0 {
            return write(dst, b"0\r\n\r\n", dir).await;
        }
    }
}
