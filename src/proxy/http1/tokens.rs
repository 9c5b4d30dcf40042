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

/// Whether a `Connection` field of this head lists a field other than the hop-by-hop ones
/// (which are dropped anyway): only then must each field be checked with
/// [`named_by_connection`]. `Connection: keep-alive` (or none) is the common case.
pub(crate) fn connection_lists_fields(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| list(h.value).any(|t| std::str::from_utf8(t).map_or(true, |t| !is_hop_by_hop(t))))
}

/// Hop-by-hop fields that never cross a proxy (RFC 9110 §7.6.1, which also names
/// `Proxy-Connection` because old clients still send it). `Transfer-Encoding` and `Content-Length` are handled by the
/// framing code, which writes its own normalised version.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 5] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
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
    fn connection_lists_fields_only_beyond_the_hop_by_hop_ones() {
        let h = |v: &'static [u8]| httparse::Header {
            name: "Connection",
            value: v,
        };
        for (value, want) in [
            (&b"keep-alive"[..], false),
            (b"Upgrade, Keep-Alive", false),
            (b"close", true),
            (b"keep-alive, X-Secret", true),
            (b"", false),
        ] {
            assert_eq!(connection_lists_fields(&[h(value)]), want, "{value:?}");
        }
        assert!(!connection_lists_fields(&[]));
    }
}
