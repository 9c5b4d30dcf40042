//! Request path normalisation: one spelling per resource, before anything looks at the path.
//!
//! Owns the rule that turns a request's path into the form routing, access lists and the
//! backend all see (RFC 3986 §6.2.2 syntax-based normalisation, plus the refusals a proxy in
//! front of unknown backends needs). Routing on one spelling and forwarding another is how a
//! route's access list is bypassed (`/x/../admin`, `/%61dmin`, `//admin`: Envoy's
//! CVE-2019-9901), so the caller routes on and forwards exactly what this returns. Pure: no
//! I/O, no allocation unless the path changes (then one reused buffer). It does not own what a
//! route matches (`route`) nor the query string, which is split off and passed through as is.
//! Protocol-independent: HTTP/1.1's request target and HTTP/2's `:path` go through the same
//! function.
//!
//! Hand-written rather than taken from a URL crate: `url` parses whole URLs and *clamps* `..`
//! above the root instead of refusing it, decodes nothing, and knows no policy for encoded
//! slashes; what is needed here is a single pass over bytes borrowed from the read buffer
//! whose common case (nothing to change) is a scan with no copy.

/// What to do with `%2F`, `%5C` (encoded `/` and `\`) and a raw `\` in a path
/// (`[proxy] escaped_slashes`). Backends disagree on whether they separate segments, so a
/// proxy that matches prefixes cannot know which resource they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Refuse the request with 400 (the default: never guess what a backend will make of it).
    #[default]
    Reject,
    /// Forward them untouched (`%2f` upper-cased to `%2F`): for backends that give `%2F` a
    /// meaning of its own (object stores, some APIs). Routes then see `a%2Fb` as one segment
    /// while a backend that decodes it sees two: route access lists cannot protect it.
    Keep,
    /// Decode them to `/` (and `\` to `/`) and forward the result.
    Decode,
    /// Decode them, then answer with a redirect to the decoded path, so the client sees
    /// which resource it named.
    Redirect,
}

impl EscapedSlashes {
    pub fn name(self) -> &'static str {
        match self {
            EscapedSlashes::Reject => "reject",
            EscapedSlashes::Keep => "keep",
            EscapedSlashes::Decode => "decode",
            EscapedSlashes::Redirect => "redirect",
        }
    }

    pub fn parse(s: &str) -> Option<EscapedSlashes> {
        Some(match s {
            "reject" => EscapedSlashes::Reject,
            "keep" => EscapedSlashes::Keep,
            "decode" => EscapedSlashes::Decode,
            "redirect" => EscapedSlashes::Redirect,
            _ => return None,
        })
    }
}

/// How paths are normalised (`[proxy]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Merge runs of `/` into one (`//admin` is `/admin`).
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused; every one is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
    #[error("invalid percent-encoding in the path")]
    BadEncoding,
    #[error("an encoded NUL (%00) in the path")]
    EncodedNul,
    #[error("an encoded slash or backslash (%2F, %5C) or a raw '\\' in the path")]
    EscapedSlash,
    #[error("a '.' or '..' segment with parameters (';') in the path")]
    DotSegmentParameter,
    #[error("a fragment ('#') in the request target")]
    Fragment,
}

/// The outcome of normalising a path that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normal {
    /// Already in normal form: route on and forward the path as received.
    Unchanged,
    /// The normal form is in the caller's buffer.
    Changed,
    /// `EscapedSlashes::Redirect` decoded a slash: redirect the client to the buffer's path.
    Redirect,
}

/// Normalise `target` (a path with an optional `?query`, as in an origin-form request
/// target or an HTTP/2 `:path`). On `Changed` or `Redirect`, `out` holds the normal form
/// with the query appended unchanged; on `Unchanged` its content is unspecified (it is a
/// reused buffer). A target that does not start with `/` (`*` of `OPTIONS *`) is left alone.
pub fn normalize(target: &str, rules: PathRules, out: &mut String) -> Result<Normal, PathError> {
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Ok(Normal::Unchanged);
    }
    // A fragment never belongs in a request (RFC 9112 §3.2, RFC 9113 §8.3.1); backends
    // disagree on whether it ends the path.
    if bytes.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    let path_end = bytes.iter().position(|&b| b == b'?').unwrap_or(bytes.len());
    let path = &bytes[..path_end];
    if is_normal(path, rules) {
        return Ok(Normal::Unchanged);
    }
    let mut buf = std::mem::take(out).into_bytes();
    buf.clear();
    let rewrite = rewrite(path, rules, &mut buf);
    // Only ASCII was written or bytes copied whole from a `str` between ASCII bytes, so this
    // holds; checked anyway since it runs only for paths that changed.
    let mut text = String::from_utf8(buf).unwrap_or_default();
    let decoded_slash = rewrite?;
    if text.as_bytes() == path {
        *out = text;
        return Ok(Normal::Unchanged);
    }
    text.push_str(&target[path_end..]);
    *out = text;
    Ok(
        if decoded_slash && rules.escaped_slashes == EscapedSlashes::Redirect {
            Normal::Redirect
        } else {
            Normal::Changed
        },
    )
}

/// The fast check: no percent-encoding to change, no `\\`, no dot segment and (when
/// merging) no `//`. Most paths pass it, and then nothing is copied.
fn is_normal(path: &[u8], rules: PathRules) -> bool {
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'%' => {
                if !is_normal_escape(path.get(i + 1..i + 3), rules) {
                    return false;
                }
                i += 2;
            }
            b'\\' if rules.escaped_slashes != EscapedSlashes::Keep => return false,
            b'/' => match path.get(i + 1) {
                Some(b'/') if rules.merge_slashes => return false,
                Some(b'.') if dot_segment_at(&path[i + 1..]) => return false,
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    true
}

/// Whether the two digits after a `%` are an encoding the normal form keeps as it is:
/// upper-case hex of a byte that is not unreserved, not NUL, and not a slash or backslash
/// (unless those are kept).
fn is_normal_escape(digits: Option<&[u8]>, rules: PathRules) -> bool {
    let Some(&[h, l]) = digits else { return false };
    let upper = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    if !upper(h) || !upper(l) {
        return false;
    }
    let v = hex(h).unwrap_or(0) << 4 | hex(l).unwrap_or(0);
    v != 0
        && !is_unreserved(v)
        && (rules.escaped_slashes == EscapedSlashes::Keep || !matches!(v, b'/' | b'\\'))
}

/// Whether the segment starting at `seg` is `.` or `..`, alone or with `;` parameters.
fn dot_segment_at(seg: &[u8]) -> bool {
    let end = seg.iter().position(|&b| b == b'/').unwrap_or(seg.len());
    let name = &seg[..end];
    let name = match name.iter().position(|&b| b == b';') {
        Some(p) => &name[..p],
        None => name,
    };
    name == b"." || name == b".."
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The slow path: one pass over the segments of `path` (which starts with `/`), decoding
/// unreserved characters, upper-casing other percent-encodings, removing dot segments
/// (RFC 3986 §5.2.4) and merging slashes into `out`. `Ok(true)` when an encoded slash or a
/// backslash was decoded.
fn rewrite(path: &[u8], rules: PathRules, out: &mut Vec<u8>) -> Result<bool, PathError> {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let mut decoded_slash = false;
    // `out` always ends with '/' between segments; a segment is written after it, then judged.
    out.push(b'/');
    let mut i = 1;
    loop {
        let seg_start = out.len();
        // Copy one segment, decoding as we go; stop at a separator or the end.
        let mut at_end = true;
        while i < path.len() {
            let b = path[i];
            i += 1;
            let (byte, encoded) = match b {
                b'/' => {
                    at_end = false;
                    break;
                }
                b'%' => {
                    let (h, l) = match (path.get(i).copied(), path.get(i + 1).copied()) {
                        (Some(h), Some(l)) => (h, l),
                        _ => return Err(PathError::BadEncoding),
                    };
                    let v = match (hex(h), hex(l)) {
                        (Some(h), Some(l)) => h << 4 | l,
                        _ => return Err(PathError::BadEncoding),
                    };
                    i += 2;
                    (v, true)
                }
                other => (other, false),
            };
            match byte {
                0 if encoded => return Err(PathError::EncodedNul),
                b'/' | b'\\' => match rules.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Keep if encoded => out.extend_from_slice(&[
                        b'%',
                        UPPER[usize::from(byte >> 4)],
                        UPPER[usize::from(byte & 15)],
                    ]),
                    EscapedSlashes::Keep => out.push(byte),
                    EscapedSlashes::Decode | EscapedSlashes::Redirect => {
                        decoded_slash = true;
                        at_end = false;
                        break;
                    }
                },
                _ if encoded && is_unreserved(byte) => out.push(byte),
                _ if encoded => out.extend_from_slice(&[
                    b'%',
                    UPPER[usize::from(byte >> 4)],
                    UPPER[usize::from(byte & 15)],
                ]),
                _ => out.push(byte),
            }
        }
        let seg = &out[seg_start..];
        let name = match seg.iter().position(|&b| b == b';') {
            Some(p) => &seg[..p],
            None => seg,
        };
        if name.len() < seg.len() && (name == b"." || name == b"..") {
            // `..;x` climbs on some backends (Tomcat) and names a file on others.
            return Err(PathError::DotSegmentParameter);
        }
        if seg == b"." {
            out.truncate(seg_start);
        } else if seg == b".." {
            out.truncate(seg_start);
            if seg_start == 1 {
                return Err(PathError::AboveRoot);
            }
            // Drop the previous segment, keeping the '/' before it.
            let prev = out[..seg_start - 1]
                .iter()
                .rposition(|&b| b == b'/')
                .map_or(1, |p| p + 1);
            out.truncate(prev);
        } else if seg.is_empty() && rules.merge_slashes {
            // An empty segment: nothing to add, the '/' before it stands for it.
        } else if !at_end {
            out.push(b'/');
        }
        if at_end {
            break;
        }
    }
    Ok(decoded_slash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm_with(path: &str, rules: PathRules) -> Result<String, PathError> {
        let mut out = String::new();
        match normalize(path, rules, &mut out)? {
            Normal::Unchanged => Ok(path.to_string()),
            Normal::Changed => Ok(out),
            Normal::Redirect => Ok(format!("redirect {out}")),
        }
    }

    fn norm(path: &str) -> Result<String, PathError> {
        norm_with(path, PathRules::default())
    }

    #[test]
    fn rfc3986_dot_segment_examples() {
        // RFC 3986 §5.4 results, as paths below the root (the base's path is "/b/c/d;p").
        let cases = [
            ("/b/c/g", "/b/c/g"),
            ("/b/c/./g", "/b/c/g"),
            ("/b/c/g/", "/b/c/g/"),
            ("/b/c/./", "/b/c/"),
            ("/b/c/../", "/b/"),
            ("/b/c/../g", "/b/g"),
            ("/b/c/../..", "/"),
            ("/b/c/../../", "/"),
            ("/b/c/../../g", "/g"),
            ("/b/c/g.", "/b/c/g."),
            ("/b/c/.g", "/b/c/.g"),
            ("/b/c/g..", "/b/c/g.."),
            ("/b/c/..g", "/b/c/..g"),
            ("/b/c/./../g", "/b/g"),
            ("/b/c/./g/.", "/b/c/g/"),
            ("/b/c/g/./h", "/b/c/g/h"),
            ("/b/c/g/../h", "/b/c/h"),
            ("/b/c/g;x=1/./y", "/b/c/g;x=1/y"),
            ("/b/c/g;x=1/../y", "/b/c/y"),
            ("/b/c/g?y/./x", "/b/c/g?y/./x"),
            ("/b/c/g?y/../x", "/b/c/g?y/../x"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn the_bypass_vectors_of_the_issue() {
        let cases = [
            ("/x/../admin/secret", Ok("/admin/secret")),
            ("/./admin/secret", Ok("/admin/secret")),
            ("//admin/secret", Ok("/admin/secret")),
            ("/%61dmin/secret", Ok("/admin/secret")),
            ("/admin%2fsecret", Err(PathError::EscapedSlash)),
            ("/x/%2e%2e/admin/secret", Ok("/admin/secret")),
            ("/x/.%2E/admin/secret", Ok("/admin/secret")),
            ("/admin/.", Ok("/admin/")),
            ("/admin/x/..", Ok("/admin/")),
            ("/%2e/admin", Ok("/admin")),
            ("/admin;x", Ok("/admin;x")),
            ("/%41DMIN/%7euser", Ok("/ADMIN/~user")),
            ("/a%2fb", Err(PathError::EscapedSlash)),
            ("/a%5Cb", Err(PathError::EscapedSlash)),
            ("/a\\b", Err(PathError::EscapedSlash)),
            ("/..;/admin", Err(PathError::DotSegmentParameter)),
            ("/x/.;a/admin", Err(PathError::DotSegmentParameter)),
            ("/..", Err(PathError::AboveRoot)),
            ("/../admin", Err(PathError::AboveRoot)),
            ("/a/../../admin", Err(PathError::AboveRoot)),
            ("/%2e%2e/admin", Err(PathError::AboveRoot)),
            ("/a%zz", Err(PathError::BadEncoding)),
            ("/a%4", Err(PathError::BadEncoding)),
            ("/a%", Err(PathError::BadEncoding)),
            ("/a%00b", Err(PathError::EncodedNul)),
            ("/admin#x", Err(PathError::Fragment)),
            ("/x?q#/../admin", Err(PathError::Fragment)),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref().map_err(|e| *e), want, "{input}");
        }
    }

    #[test]
    fn ordinary_paths_are_not_copied() {
        for p in [
            "/",
            "/index.html",
            "/a%2Fb%5C",
            "/api/v1/posts?id=1&x=/../y",
            "/a/b/",
            "/%20space",
            "/caf\u{e9}/\u{d55c}\u{ae00}",
            "/%C3%A9t%C3%A9",
            "/.well-known/acme-challenge/x",
            "/a/..b/.c/",
            "*",
        ] {
            let rules = PathRules {
                escaped_slashes: if p.contains("%2F") {
                    EscapedSlashes::Keep
                } else {
                    EscapedSlashes::Reject
                },
                ..PathRules::default()
            };
            let mut out = String::from("untouched");
            assert_eq!(normalize(p, rules, &mut out), Ok(Normal::Unchanged), "{p}");
            // The fast check passed: nothing was copied.
            assert_eq!(out, "untouched", "{p}");
        }
    }

    #[test]
    fn percent_encodings_are_upper_cased_and_the_query_is_left_alone() {
        assert_eq!(
            norm("/caf%c3%a9?q=%2e%2e").as_deref(),
            Ok("/caf%C3%A9?q=%2e%2e")
        );
        assert_eq!(norm("//a?b//c").as_deref(), Ok("/a?b//c"));
        assert_eq!(norm("/a/%7E/").as_deref(), Ok("/a/~/"));
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
    }

    #[test]
    fn merging_slashes_can_be_turned_off() {
        let keep = PathRules {
            merge_slashes: false,
            ..PathRules::default()
        };
        assert_eq!(norm_with("//admin", keep).as_deref(), Ok("//admin"));
        assert_eq!(norm_with("/a//b/./c", keep).as_deref(), Ok("/a//b/c"));
        assert_eq!(norm_with("/a//../b", keep).as_deref(), Ok("/a/b"));
        assert_eq!(norm("/a//../b").as_deref(), Ok("/b"));
        assert_eq!(norm("///").as_deref(), Ok("/"));
    }

    #[test]
    fn escaped_slash_modes() {
        let mode = |m| PathRules {
            escaped_slashes: m,
            ..PathRules::default()
        };
        let keep = mode(EscapedSlashes::Keep);
        assert_eq!(
            norm_with("/admin%2fsecret", keep).as_deref(),
            Ok("/admin%2Fsecret")
        );
        assert_eq!(norm_with("/a%5cb\\c", keep).as_deref(), Ok("/a%5Cb\\c"));
        let decode = mode(EscapedSlashes::Decode);
        assert_eq!(
            norm_with("/admin%2fsecret", decode).as_deref(),
            Ok("/admin/secret")
        );
        assert_eq!(norm_with("/a\\..\\admin", decode).as_deref(), Ok("/admin"));
        assert_eq!(norm_with("/a%2F%2Fb", decode).as_deref(), Ok("/a/b"));
        let redirect = mode(EscapedSlashes::Redirect);
        assert_eq!(
            norm_with("/admin%2Fsecret?x", redirect).as_deref(),
            Ok("redirect /admin/secret?x")
        );
        // Nothing decoded: no redirect, even in redirect mode.
        assert_eq!(norm_with("/a/./b", redirect).as_deref(), Ok("/a/b"));
    }

    #[test]
    fn long_and_deep_paths_take_one_pass() {
        let deep = "/a".repeat(4000) + &"/..".repeat(4000);
        assert_eq!(norm(&deep).as_deref(), Ok("/"));
        let climb = "/a".repeat(4000) + &"/..".repeat(4001);
        assert_eq!(norm(&climb), Err(PathError::AboveRoot));
        let slashes = "/".repeat(8000) + "x";
        assert_eq!(norm(&slashes).as_deref(), Ok("/x"));
        let encoded = "/%61".repeat(5000);
        assert_eq!(norm(&encoded), Ok("/a".repeat(5000)));
    }

    /// Bytes a path may hold after httparse, weighted towards the ones normalisation acts on.
    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%61".to_string()),
            Just("%7e".to_string()),
            Just("%c3%a9".to_string()),
            Just("%20".to_string()),
            Just("%2f".to_string()),
            Just(";".to_string()),
            Just("\\".to_string()),
            "[a-z]{1,3}".prop_map(|s| s),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #[test]
        fn normal_form_is_idempotent_and_clean(
            path in path_strategy(),
            merge in any::<bool>(),
            mode in 0u8..4,
        ) {
            let rules = PathRules {
                merge_slashes: merge,
                escaped_slashes: [EscapedSlashes::Reject, EscapedSlashes::Keep,
                    EscapedSlashes::Decode, EscapedSlashes::Redirect][usize::from(mode)],
            };
            if let Ok(once) = norm_with(&path, rules) {
                let once = once.strip_prefix("redirect ").unwrap_or(&once).to_string();
                let twice = norm_with(&once, rules);
                prop_assert_eq!(twice.as_deref(), Ok(once.as_str()));
                let p = once.split('?').next().unwrap_or("");
                for seg in p.split('/').skip(1) {
                    prop_assert!(seg != "." && seg != "..", "dot segment in {}", once);
                }
                if merge {
                    prop_assert!(!p.contains("//"), "// in {}", once);
                }
                let lower = p.to_ascii_lowercase();
                for enc in ["%2e", "%61", "%7e"] {
                    prop_assert!(!lower.contains(enc), "{} in {}", enc, once);
                }
            }
        }
    }
}
