//! Moving bytes between two TCP sockets with splice(2), through a pipe, without copying them
//! into this process.
//!
//! Owns the zero-copy relay and its fallback: where splice is refused (EINVAL on an exotic
//! socket) the same loop continues with ordinary reads and writes. Each direction ends by
//! shutting down the write side of its destination, so half-closed streams work.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per read/write in the fallback loop.
const CHUNK: usize = 64 * 1024;
/// The pipe between the sockets is grown to this (the default 64 KiB pipe makes a bulk
/// transfer take four times as many splice calls and wake-ups); where the kernel refuses
/// (`fs.pipe-max-size` lower, or the user's pipe quota spent) the default pipe is used.
const PIPE_SIZE: i32 = 1 << 20;

/// Relay both ways until both directions have ended; returns (client→backend, backend→client)
/// byte counts.
pub async fn relay(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    let (up, down) = tokio::join!(one_way(a, b), one_way(b, a));
    Ok((up?, down?))
}

async fn one_way(src: &TcpStream, dst: &TcpStream) -> io::Result<u64> {
    let result = match nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC) {
        Ok((r, w)) => {
            // F_SETPIPE_SZ returns the size the pipe got (a power of two pages).
            let size = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE))
                .map_or(CHUNK, |n| usize::try_from(n).unwrap_or(CHUNK));
            splice_loop(src, dst, &r, &w, size).await
        }
        Err(_) => Err(io::ErrorKind::Unsupported.into()),
    };
    let total = match result {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => copy_loop(src, dst).await?,
        Err(e) => return Err(e),
    };
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    Ok(total)
}

async fn splice_loop(
    src: &TcpStream,
    dst: &TcpStream,
    pipe_r: &OwnedFd,
    pipe_w: &OwnedFd,
    pipe_size: usize,
) -> io::Result<u64> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        let filled = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                splice(src.as_fd(), None, pipe_w.as_fd(), None, pipe_size, flags)
                    .map_err(errno_to_io)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // EINVAL before anything moved: this pair cannot splice; fall back.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && total == 0 => {
                    return Err(io::ErrorKind::Unsupported.into())
                }
                Err(e) => return Err(e),
            }
        };
        if filled == 0 {
            return Ok(total);
        }
        let mut left = filled;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe_r.as_fd(), None, dst.as_fd(), None, left, flags).map_err(errno_to_io)
            }) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += filled as u64;
    }
}

fn errno_to_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

async fn copy_loop(src: &TcpStream, dst: &TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}
