//! HTTP/1.x: the wire format, and the connection driver that speaks it to clients and backends.
//!
//! Owns byte-level rules (RFC 9112 framing, RFC 9110 hop-by-hop fields): parsing and validating
//! request and response heads (`request`, `response`), the chunked body decoder (`chunked`),
//! and the small responses vipgate writes itself (`local`) — functions over byte slices with no
//! I/O, tested and fuzzed without sockets. The I/O is in two modules: `conn` (a client
//! connection's loop, and the HTTP/1.1 side of each try against a backend) and `relay` (the
//! body copy loops). What a request means (route, access, retries) is `proxy::exchange`'s.

pub mod chunked;
pub mod conn;
mod lines;
pub mod local;
pub mod relay;
pub mod request;
pub mod response;
mod to_http2;
pub(crate) mod tokens;

/// Most header fields in one head (the parse array's size, and the largest `max_headers`);
/// more gets 431. Largest request or response head; more gets 431 (request) or 502
/// (response). Defined once, with the other limits, in `config::defaults`.
pub use crate::config::defaults::{MAX_HEADERS, MAX_HEAD_SIZE};

/// Room for the fields of one head, filled by the parser. Left uninitialised: writing
/// `MAX_HEADERS` empty fields before every parse cost more than parsing a typical head.
pub type Headers<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// An empty [`Headers`], for one call of `request::parse` or `response::parse`.
pub const fn headers<'b>() -> Headers<'b> {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// The HTTP minor version of a message (HTTP/1.0 or HTTP/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// As the request line and the access log write it.
    pub fn name(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }

    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }
}

/// How the body of a message is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, ended by the last chunk and trailer section.
    Chunked,
    /// Responses only: the body runs until the backend closes the connection.
    UntilClose,
}
