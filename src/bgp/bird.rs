//! BIRD's control socket (the protocol `birdc` speaks), for what vipgate reads from the local
//! BIRD and the one thing it asks of it.
//!
//! Owns: parsing a reply (pure: [`Reply::parse`], the `show protocols` table
//! [`parse_protocols`]) and one short exchange on the socket ([`query`]: connect, read the
//! greeting, `show protocols`, and `enable NAME` when vipgate's kernel protocol is not up).
//! Does not own what is announced (the kernel table, `table`) nor when (`speaker`).
//!
//! The wire format (BIRD's `doc/prog` "CLI"; captured from BIRD 2.0.12 in the tests below):
//! every reply line is a four-digit code then `-` (more lines follow) or ` ` (the last line),
//! or a space alone for a continuation of the previous code. Codes 0xxx end a command
//! successfully (`0000` after a table, `0011 NAME: enabled`), 1xxx are table rows, 2xxx
//! table headers, 8xxx runtime errors and 9xxx parse errors. The greeting is `0001 BIRD
//! VERSION ready.`.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A whole exchange may take this long: BIRD answers `show protocols` in microseconds; a
/// BIRD that does not is reported as unreachable rather than holding the reconcile loop.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply longer than this is not one vipgate asked for.
const MAX_REPLY_LINES: usize = 10_000;

/// One complete reply: the code of its last line and the text of every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Each line's code (a continuation line gets the code before it) and text.
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// Parses lines until the last line of a reply; `None` if `lines` holds no complete reply
    /// or a line is not in the format.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Reply> {
        let mut out = Vec::new();
        let mut code = None;
        for line in lines {
            match parse_line(line, code)? {
                Line::More(c, text) => {
                    code = Some(c);
                    out.push((c, text.to_owned()));
                }
                Line::Last(c, text) => {
                    out.push((c, text.to_owned()));
                    return Some(Reply {
                        code: c,
                        lines: out,
                    });
                }
            }
        }
        None
    }

    /// 8xxx and 9xxx: BIRD refused the command.
    pub fn is_error(&self) -> bool {
        self.code >= 8000
    }
}

enum Line<'a> {
    More(u16, &'a str),
    Last(u16, &'a str),
}

fn parse_line(line: &str, previous: Option<u16>) -> Option<Line<'_>> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if let Some(text) = line.strip_prefix(' ') {
        return Some(Line::More(previous?, text));
    }
    let code = line.get(..4)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    let text = line.get(5..).unwrap_or("");
    match line.as_bytes().get(4) {
        Some(b'-') => Some(Line::More(code, text)),
        Some(b' ') | None => Some(Line::Last(code, text)),
        _ => None,
    }
}

/// One row of `show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    /// `BGP`, `Kernel`, `Device`, `BFD`, …
    pub proto: String,
    /// `up`, `down` (also when disabled), `start`, `stop`, `flush`.
    pub state: String,
    /// For BGP the session state: `Established`, `Active`, `Connect`, …; may be empty.
    pub info: String,
}

impl Protocol {
    pub fn is_up(&self) -> bool {
        self.state == "up"
    }

    pub fn is_bgp(&self) -> bool {
        self.proto == "BGP"
    }
}

/// The rows (code 1002) of a `show protocols` reply. Columns: name, protocol, table, state,
/// since (one or two words: a time, or a date and a time with `timeformat protocol iso
/// long`), info (the rest).
pub fn parse_protocols(reply: &Reply) -> Vec<Protocol> {
    reply
        .lines
        .iter()
        .filter(|(code, _)| *code == 1002)
        .filter_map(|(_, text)| {
            let mut words = text.split_whitespace();
            let name = words.next()?.to_owned();
            let proto = words.next()?.to_owned();
            let _table = words.next()?;
            let state = words.next()?.to_owned();
            let rest: Vec<&str> = words.collect();
            // `since` is a time (12:25:46.043) possibly preceded by a date (2026-12-03).
            let skip = match rest.first() {
                Some(d) if d.len() == 10 && d.as_bytes().get(4) == Some(&b'-') => 2,
                Some(_) => 1,
                None => 0,
            };
            let info = rest.get(skip..).unwrap_or_default().join(" ");
            Some(Protocol {
                name,
                proto,
                state,
                info,
            })
        })
        .collect()
}

/// What one look at BIRD found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub protocols: Vec<Protocol>,
    /// `enable NAME` was sent because vipgate's kernel protocol was not up.
    pub reenabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("cannot talk to BIRD at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BIRD at {path} did not answer within {QUERY_TIMEOUT:?}")]
    Timeout { path: String },
    #[error("BIRD at {path} sent a reply vipgate cannot read")]
    Garbled { path: String },
    #[error("BIRD at {path} has no protocol {protocol:?} (the kernel protocol that learns vipgate's table; see docs/operations.md)")]
    NoProtocol { path: String, protocol: String },
    #[error("BIRD at {path} refused `{command}`: {reply}")]
    Refused {
        path: String,
        command: String,
        reply: String,
    },
}

/// Connects to BIRD at `socket`, reads `show protocols`, and enables `protocol` (vipgate's
/// kernel protocol) if it is not up, as when someone ran `birdc disable` on it.
pub async fn query(socket: &Path, protocol: &str) -> Result<Seen, BirdError> {
    let path = socket.display().to_string();
    match tokio::time::timeout(QUERY_TIMEOUT, exchange(socket, protocol, &path)).await {
        Ok(r) => r,
        Err(_) => Err(BirdError::Timeout { path }),
    }
}

async fn exchange(socket: &Path, protocol: &str, path: &str) -> Result<Seen, BirdError> {
    let io = |source| BirdError::Io {
        path: path.to_owned(),
        source,
    };
    let stream = UnixStream::connect(socket).await.map_err(io)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let greeting = read_reply(&mut read, path).await?;
    if greeting.code != 1 {
        return Err(BirdError::Garbled {
            path: path.to_owned(),
        });
    }
    let protocols = command(&mut read, &mut write, "show protocols", path).await?;
    let protocols = parse_protocols(&protocols);
    let ours = protocols.iter().find(|p| p.name == protocol);
    let reenabled = match ours {
        None => {
            return Err(BirdError::NoProtocol {
                path: path.to_owned(),
                protocol: protocol.to_owned(),
            })
        }
        Some(p) if p.is_up() => false,
        Some(_) => {
            command(&mut read, &mut write, &format!("enable {protocol}"), path).await?;
            true
        }
    };
    Ok(Seen {
        protocols,
        reenabled,
    })
}

async fn command(
    read: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    command: &str,
    path: &str,
) -> Result<Reply, BirdError> {
    write
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|source| BirdError::Io {
            path: path.to_owned(),
            source,
        })?;
    let reply = read_reply(read, path).await?;
    if reply.is_error() {
        return Err(BirdError::Refused {
            path: path.to_owned(),
            command: command.to_owned(),
            reply: reply
                .lines
                .last()
                .map(|(_, t)| t.clone())
                .unwrap_or_default(),
        });
    }
    Ok(reply)
}

async fn read_reply(
    read: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    path: &str,
) -> Result<Reply, BirdError> {
    let garbled = || BirdError::Garbled {
        path: path.to_owned(),
    };
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = read
            .read_line(&mut line)
            .await
            .map_err(|source| BirdError::Io {
                path: path.to_owned(),
                source,
            })?;
        if n == 0 || lines.len() >= MAX_REPLY_LINES {
            return Err(garbled());
        }
        let last = matches!(line.as_bytes().get(4), Some(b' ') | Some(b'\n'))
            && line.as_bytes().first().is_some_and(u8::is_ascii_digit);
        lines.push(line);
        if last {
            return Reply::parse(lines.iter().map(String::as_str)).ok_or_else(garbled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `show protocols` from BIRD 2.0.12 (Debian bird2), vipgate's kernel protocol disabled
    /// with `birdc disable vipgate`.
    const SHOW_PROTOCOLS: &[&str] = &[
        "2002-Name       Proto      Table      State  Since         Info\n",
        "1002-device1    Device     ---        up     12:25:46.043  \n",
        " vipgate    Kernel     master4    down   12:28:15.066  \n",
        " up         BGP        ---        up     12:25:50.601  Established   \n",
        "0000 \n",
    ];

    #[test]
    fn a_table_reply_is_read_with_continuations() {
        let r = Reply::parse(SHOW_PROTOCOLS.iter().copied()).unwrap();
        assert_eq!(r.code, 0);
        assert!(!r.is_error());
        let codes: Vec<u16> = r.lines.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [2002, 1002, 1002, 1002, 0]);
        let p = parse_protocols(&r);
        let rows: Vec<(&str, &str, &str, &str)> = p
            .iter()
            .map(|p| (&*p.name, &*p.proto, &*p.state, &*p.info))
            .collect();
        assert_eq!(
            rows,
            [
                ("device1", "Device", "up", ""),
                ("vipgate", "Kernel", "down", ""),
                ("up", "BGP", "up", "Established"),
            ]
        );
        assert!(p[2].is_bgp() && p[2].is_up());
        assert!(!p[1].is_up());
    }

    #[test]
    fn iso_long_times_and_multi_word_info_are_read() {
        let r = Reply::parse([
            "1002-n1         BGP        ---        start  2026-12-03 12:25:50  Active        Socket: Connection refused\n",
            "0000 \n",
        ])
        .unwrap();
        let p = parse_protocols(&r);
        assert_eq!(p[0].state, "start");
        assert_eq!(p[0].info, "Active Socket: Connection refused");
    }

    #[test]
    fn single_line_replies_and_errors() {
        // (lines, code, error)
        let cases: &[(&[&str], u16, bool)] = &[
            (&["0001 BIRD 2.0.12 ready.\n"], 1, false),
            (&["0011-vipgate: enabled\n", "0000 \n"], 0, false),
            (&["0010-vipgate: already enabled\n", "0000 \n"], 0, false),
            (
                &["9001 syntax error, unexpected CF_SYM_UNDEFINED\n"],
                9001,
                true,
            ),
            (&["8003 No protocols match\n"], 8003, true),
            (&["0000"], 0, false),
        ];
        for (lines, code, error) in cases {
            let r = Reply::parse(lines.iter().copied()).unwrap();
            assert_eq!((r.code, r.is_error()), (*code, *error), "{lines:?}");
        }
    }

    #[test]
    fn incomplete_or_foreign_text_is_no_reply() {
        let cases: &[&[&str]] = &[
            &["1002-device1 Device --- up 12:00:00\n"],
            &[" continuation without a code\n"],
            &["12a4 not a code\n"],
            &["0000x\n"],
            &[],
        ];
        for lines in cases {
            assert_eq!(Reply::parse(lines.iter().copied()), None, "{lines:?}");
        }
    }
}
