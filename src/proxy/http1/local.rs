//! Responses vipgate writes itself (errors and `100 Continue`), as complete byte strings.

use bytes::{BufMut, BytesMut};

use super::request::Fmt;

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Write a short plain-text response. `close` adds `Connection: close`, which the caller must
/// then honour.
pub fn write_error(status: u16, body: &str, close: bool, out: &mut BytesMut) {
    let _ = std::fmt::Write::write_fmt(
        &mut Fmt(out),
        format_args!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n",
            reason(status),
            body.len() + 1,
            if close { "close" } else { "keep-alive" },
        ),
    );
    out.put_slice(body.as_bytes());
    out.put_u8(b'\n');
}

/// Write a 200 whose body is `body` exactly (an ACME HTTP-01 key authorization).
pub fn write_text(body: &str, close: bool, out: &mut BytesMut) {
    let _ = std::fmt::Write::write_fmt(
        &mut Fmt(out),
        format_args!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n",
            body.len(),
            if close { "close" } else { "keep-alive" },
        ),
    );
    out.put_slice(body.as_bytes());
}

/// Write a redirect to `location` (already checked to hold no control characters).
pub fn write_redirect(status: u16, location: &str, close: bool, out: &mut BytesMut) {
    let _ = std::fmt::Write::write_fmt(
        &mut Fmt(out),
        format_args!(
            "HTTP/1.1 {status} {}\r\nLocation: {location}\r\nContent-Length: 0\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n",
            reason(status),
            if close { "close" } else { "keep-alive" },
        ),
    );
}

pub fn reason(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_complete_and_framed() {
        let mut out = BytesMut::new();
        write_error(404, "no route", false, &mut out);
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 9\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\nno route\n"[..]
        );
    }

    #[test]
    fn redirect_names_the_location_and_has_no_body() {
        let mut out = BytesMut::new();
        write_redirect(308, "https://a.test/x?y=1", true, &mut out);
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://a.test/x?y=1\r\nContent-Length: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"[..]
        );
    }
}
