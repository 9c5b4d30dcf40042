//! Helpers for comma-separated header values (RFC 9110 §5.6.1 lists).

/// The non-empty, trimmed elements of a list-valued field.
pub(crate) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether a list-valued field holds `token` (ASCII case-insensitive).
pub(crate) fn has(value: &[u8], token: &str) -> bool {
    list(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether a `Connection` field of this head names `field` as hop-by-hop (RFC 9110 §7.6.1).
pub(crate) fn named_by_connection(headers: &[httparse::Header<'_>], field: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| has(h.value, field))
}

/// The fields the proxy reads or rewrites. One switch on the name's length and one
/// case-insensitive compare tell them apart, where a chain of compares per field ran for every
/// field of every head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    Expect,
    XRealIp,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
    Other,
}

impl Field {
    /// The field named `name` (ASCII case-insensitive); also used on `Connection` list tokens.
    pub(crate) fn of(name: &[u8]) -> Field {
        let is = |lower: &[u8]| eq_folded(name, lower);
        match name.len() {
            2 if is(b"te") => Field::Te,
            4 if is(b"host") => Field::Host,
            6 if is(b"expect") => Field::Expect,
            7 if is(b"upgrade") => Field::Upgrade,
            9 if is(b"x-real-ip") => Field::XRealIp,
            10 if is(b"connection") => Field::Connection,
            10 if is(b"keep-alive") => Field::KeepAlive,
            12 if is(b"x-request-id") => Field::XRequestId,
            14 if is(b"content-length") => Field::ContentLength,
            15 if is(b"x-forwarded-for") => Field::XForwardedFor,
            16 if is(b"x-forwarded-host") => Field::XForwardedHost,
            16 if is(b"proxy-connection") => Field::ProxyConnection,
            17 if is(b"transfer-encoding") => Field::TransferEncoding,
            17 if is(b"x-forwarded-proto") => Field::XForwardedProto,
            _ => Field::Other,
        }
    }

    /// Hop-by-hop fields that never cross a proxy (RFC 9110 §7.6.1, which also names
    /// `Proxy-Connection` because old clients still send it). `Transfer-Encoding` and
    /// `Content-Length` are handled by the framing code, which writes its own normalised
    /// version.
    pub(crate) fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Field::Connection
                | Field::KeepAlive
                | Field::ProxyConnection
                | Field::Te
                | Field::Upgrade
        )
    }
}

/// `name` equals `lower` ignoring ASCII case, where `lower` holds lower-case letters, digits
/// and `-` only. ORing 0x20 into exactly the bytes where `lower` has a letter folds their
/// case, a machine word per compare (windows may overlap); every other byte must match as is.
#[inline(always)]
fn eq_folded(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    match n {
        0 => true,
        1 => name[0] | fold(lower[0]) == lower[0],
        2..=3 => window::<2>(name, lower, 0) && window::<2>(name, lower, n - 2),
        4..=7 => window::<4>(name, lower, 0) && window::<4>(name, lower, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if !window::<8>(name, lower, at) {
                    return false;
                }
                at += 8;
            }
            window::<8>(name, lower, n - 8)
        }
    }
}

#[inline(always)]
fn fold(lower: u8) -> u8 {
    if lower.is_ascii_lowercase() {
        0x20
    } else {
        0
    }
}

/// `eq_folded` over the `W` bytes at `at` of both (as long as each other and at least
/// `at + W`).
#[inline(always)]
fn window<const W: usize>(name: &[u8], lower: &[u8], at: usize) -> bool {
    let (Some(a), Some(l)) = (name.get(at..at + W), lower.get(at..at + W)) else {
        return false;
    };
    let mut word = [0u8; 8];
    let mut want = [0u8; 8];
    let mut mask = [0u8; 8];
    word[..W].copy_from_slice(a);
    want[..W].copy_from_slice(l);
    for (m, &l) in mask.iter_mut().zip(l) {
        *m = fold(l);
    }
    u64::from_ne_bytes(word) | u64::from_ne_bytes(mask) == u64::from_ne_bytes(want)
}

/// What the `Connection` fields of a head say, read in one pass over each value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Names a field other than the hop-by-hop ones (which are dropped anyway): only then must
    /// each field be checked with [`named_by_connection`]. `Connection: keep-alive` (or none)
    /// is the common case.
    pub names_fields: bool,
}

impl ConnectionOptions {
    /// The options of one `Connection` field value.
    pub(crate) fn of(value: &[u8]) -> ConnectionOptions {
        let mut o = ConnectionOptions::default();
        // The usual value is the one token, with nothing around it to trim or split.
        if eq_folded(value, b"keep-alive") {
            o.keep_alive = true;
            return o;
        }
        for t in list(value) {
            match Field::of(t) {
                Field::KeepAlive => o.keep_alive = true,
                Field::Upgrade => o.upgrade = true,
                f if f.is_hop_by_hop() => {}
                _ => {
                    o.close |= t.eq_ignore_ascii_case(b"close");
                    o.names_fields = true;
                }
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_trimmed_and_skip_empty_elements() {
        let v: Vec<&[u8]> = list(b" gzip ,, chunked\t").collect();
        assert_eq!(v, vec![&b"gzip"[..], &b"chunked"[..]]);
        assert!(has(b"keep-alive, Upgrade", "upgrade"));
        assert!(!has(b"keep-alive", "close"));
    }

    #[test]
    fn connection_options_name_fields_only_beyond_the_hop_by_hop_ones() {
        let o = |close, keep_alive, upgrade, names_fields| ConnectionOptions {
            close,
            keep_alive,
            upgrade,
            names_fields,
        };
        for (value, want) in [
            (&b"keep-alive"[..], o(false, true, false, false)),
            (b"Upgrade, Keep-Alive", o(false, true, true, false)),
            (b"close", o(true, false, false, true)),
            (b"CLOSE", o(true, false, false, true)),
            (b"keep-alive, X-Secret", o(false, true, false, true)),
            (
                b"te, proxy-connection, connection",
                o(false, false, false, false),
            ),
            (b"closed", o(false, false, false, true)),
            (b"\xff", o(false, false, false, true)),
            (b"", o(false, false, false, false)),
        ] {
            assert_eq!(ConnectionOptions::of(value), want, "{value:?}");
        }
    }

    #[test]
    fn fields_are_told_apart_ignoring_case() {
        for (name, want) in [
            ("Host", Field::Host),
            ("HOST", Field::Host),
            ("Hosts", Field::Other),
            ("content-length", Field::ContentLength),
            ("Content-Type", Field::Other),
            ("Transfer-Encoding", Field::TransferEncoding),
            ("Connection", Field::Connection),
            ("Keep-Alive", Field::KeepAlive),
            ("Proxy-Connection", Field::ProxyConnection),
            ("TE", Field::Te),
            ("Upgrade", Field::Upgrade),
            ("Expect", Field::Expect),
            ("X-Real-IP", Field::XRealIp),
            ("X-Forwarded-For", Field::XForwardedFor),
            ("x-forwarded-proto", Field::XForwardedProto),
            ("X-Forwarded-Host", Field::XForwardedHost),
            ("X-Request-Id", Field::XRequestId),
            ("X-Forwarded-Hosz", Field::Other),
            ("", Field::Other),
        ] {
            assert_eq!(Field::of(name.as_bytes()), want, "{name}");
        }
        let hop: Vec<_> = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "upgrade",
        ]
        .into_iter()
        .map(|n| Field::of(n.as_bytes()))
        .collect();
        assert!(hop.iter().all(|f| f.is_hop_by_hop()));
        assert!(!Field::TransferEncoding.is_hop_by_hop() && !Field::Other.is_hop_by_hop());
    }
}
