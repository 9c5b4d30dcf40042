//! Parsing a backend's response head and writing the head the client gets.
//!
//! Owns the response framing rules (RFC 9112 §6.3: which responses have no body, how a body
//! is delimited) and which fields are dropped on the way back. No I/O.

use bytes::{BufMut, BytesMut};

use super::lines::LineCopy;
use super::request::put_u64;
use super::tokens::{self, ConnectionOptions, Field};
use super::{Framing, Headers, Version, MAX_HEAD_SIZE};

/// Why a backend's response could not be relayed; the client gets 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    #[error("response head larger than {MAX_HEAD_SIZE} bytes")]
    HeadTooLarge,
}

#[derive(Debug)]
pub struct Response<'b, 'h> {
    pub status: u16,
    pub reason: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// The received head's bytes, which `headers` point into.
    pub head: &'b [u8],
    pub head_len: usize,
    pub framing: Framing,
    /// The backend will close after this response.
    pub close: bool,
    /// A `Connection` field names fields beyond the hop-by-hop ones, which must then be
    /// dropped too.
    pub connection_names_fields: bool,
}

impl Response<'_, '_> {
    /// 101: the connection becomes a tunnel after this head.
    pub fn is_switching(&self) -> bool {
        self.status == 101
    }

    /// 1xx other than 101: more heads follow for the same request.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Parse the response head at the start of `buf`; `head_request` if it answers a HEAD.
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut Headers<'b>,
    head_request: bool,
) -> Result<Option<Response<'b, 'h>>, ResponseError> {
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, headers)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_SIZE => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError::Malformed("too many headers"))
        }
        Err(_) => return Err(ResponseError::Malformed("unparsable head")),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(ResponseError::Malformed("incomplete status line"));
    };
    let version = Version::from_minor(minor);
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut close = version == Version::Http10;
    let mut connection_names_fields = false;
    for h in headers {
        match Field::of(h.name.as_bytes()) {
            Field::ContentLength => {
                for v in tokens::list(h.value) {
                    // Digits only (no sign), and no more than a u64 holds.
                    let n = v
                        .iter()
                        .try_fold(0u64, |n, &b| {
                            if b.is_ascii_digit() {
                                n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
                            } else {
                                None
                            }
                        })
                        .ok_or(ResponseError::Malformed("invalid Content-Length"))?;
                    if content_length.is_some_and(|seen| seen != n) {
                        return Err(ResponseError::Malformed(
                            "conflicting Content-Length values",
                        ));
                    }
                    content_length = Some(n);
                }
            }
            Field::TransferEncoding => {
                has_te = true;
                chunked = tokens::list(h.value)
                    .last()
                    .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            }
            Field::Connection => {
                let o = ConnectionOptions::of(h.value);
                connection_names_fields |= o.names_fields;
                if o.close {
                    close = true;
                } else if o.keep_alive && version == Version::Http10 {
                    close = false;
                }
            }
            _ => {}
        }
    }
    // RFC 9112 §6.3: HEAD, 1xx, 204 and 304 responses end at the head whatever they say.
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else if has_te {
        // Transfer-Encoding overrides Content-Length; a non-chunked final coding runs to close.
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok(Some(Response {
        status,
        reason: resp.reason.unwrap_or(""),
        version,
        headers,
        head: &buf[..head_len],
        head_len,
        framing,
        close: close || framing == Framing::UntilClose,
        connection_names_fields,
    }))
}

/// How the body is sent to the client, which may differ from how it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// As received (Content-Length, chunked passed through, or nothing).
    Same,
    /// Received until close; re-framed as chunked so the client connection can stay open.
    Rechunk,
    /// An HTTP/1.0 client cannot read chunked: send the payload raw and close.
    Dechunk,
}

/// Write the head the client gets. `keep_alive` is our decision for the client connection.
/// Returns how the body must be relayed.
pub fn write_client_head(
    resp: &Response<'_, '_>,
    client_version: Version,
    keep_alive: bool,
    out: &mut BytesMut,
) -> ClientFraming {
    let framing = match (resp.framing, client_version) {
        (Framing::UntilClose, Version::Http11) if keep_alive => ClientFraming::Rechunk,
        (Framing::Chunked, Version::Http10) => ClientFraming::Dechunk,
        _ => ClientFraming::Same,
    };
    out.put_slice(b"HTTP/1.1 ");
    match resp.status {
        // The parser reads exactly three digits; leading zeros (status < 100) are not kept.
        s @ 100..=999 => out.put_slice(&[
            b'0' + (s / 100) as u8,
            b'0' + (s / 10 % 10) as u8,
            b'0' + (s % 10) as u8,
            b' ',
        ]),
        s => {
            put_u64(out, u64::from(s));
            out.put_u8(b' ');
        }
    }
    out.put_slice(resp.reason.as_bytes());
    out.put_slice(b"\r\n");
    let mut lines = LineCopy::new(resp.head);
    for h in resp.headers {
        let field = Field::of(h.name.as_bytes());
        // A 101 keeps its Upgrade: it tells the client which protocol now runs.
        let keep_upgrade = resp.is_switching() && field == Field::Upgrade;
        if !keep_upgrade
            && (field.is_hop_by_hop()
                || (resp.connection_names_fields
                    && tokens::named_by_connection(resp.headers, h.name)))
        {
            continue;
        }
        if field == Field::TransferEncoding && framing != ClientFraming::Same {
            continue;
        }
        lines.keep(h, out);
    }
    lines.flush(out);
    if framing == ClientFraming::Rechunk {
        out.put_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if resp.is_switching() {
        out.put_slice(b"Connection: upgrade\r\n");
    } else if !resp.is_interim() {
        let keep = client_may_keep(resp, framing, keep_alive);
        out.put_slice(if keep {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
    }
    out.put_slice(b"\r\n");
    framing
}

/// Whether the client connection may stay open after relaying this response as `framing`.
pub fn client_may_keep(resp: &Response<'_, '_>, framing: ClientFraming, keep_alive: bool) -> bool {
    // A body that runs to close and is passed through as is can only end by closing.
    let ends_by_close = resp.framing == Framing::UntilClose && framing == ClientFraming::Same;
    keep_alive && framing != ClientFraming::Dechunk && !ends_by_close
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing_of(raw: &[u8], method: &str) -> Framing {
        let mut h = super::super::headers();
        parse(raw, &mut h, method == "HEAD")
            .unwrap()
            .unwrap()
            .framing
    }

    #[test]
    fn body_framing_rules() {
        let cases: &[(&[u8], &str, Framing)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                "GET",
                Framing::Length(5),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                "HEAD",
                Framing::Empty,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", Framing::Empty),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                "GET",
                Framing::Empty,
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", "POST", Framing::Empty),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                "GET",
                Framing::Chunked,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "GET",
                Framing::UntilClose,
            ),
            (b"HTTP/1.0 200 OK\r\n\r\n", "GET", Framing::UntilClose),
        ];
        for (raw, method, want) in cases {
            assert_eq!(
                framing_of(raw, method),
                *want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn client_head_for_until_close_body_is_rechunked() {
        let raw = b"HTTP/1.0 200 OK\r\nServer: x\r\nConnection: close\r\n\r\n";
        let mut h = super::super::headers();
        let resp = parse(raw, &mut h, false).unwrap().unwrap();
        let mut out = BytesMut::new();
        let f = write_client_head(&resp, Version::Http11, true, &mut out);
        assert_eq!(f, ClientFraming::Rechunk);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nServer: x\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        );
        assert!(client_may_keep(&resp, f, true));
    }

    #[test]
    fn chunked_to_http10_client_is_dechunked_and_closed() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut h = super::super::headers();
        let resp = parse(raw, &mut h, false).unwrap().unwrap();
        let mut out = BytesMut::new();
        let f = write_client_head(&resp, Version::Http10, true, &mut out);
        assert_eq!(f, ClientFraming::Dechunk);
        assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        assert!(!client_may_keep(&resp, f, true));
    }
}
