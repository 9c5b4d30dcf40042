//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! Owns finding where a chunked body ends and which bytes are payload, fed any split of the
//! input. It validates as it goes (hex sizes without overflow, CRLF after every line and chunk,
//! bounded extensions and trailers), so a body it accepts has exactly one reading. It does no
//! I/O and never looks past the end of the body.

/// Longest chunk-size line including extensions; longer is refused, not buffered.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section.
pub const MAX_TRAILER_SIZE: usize = 16 * 1024;
/// 16 hex digits fill a u64; more is an overflow attempt.
const MAX_SIZE_DIGITS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk size overflows")]
    SizeOverflow,
    #[error("chunk line too long")]
    LineTooLong,
    #[error("invalid chunk extension")]
    BadExtension,
    #[error("missing CRLF")]
    MissingCrlf,
    #[error("trailer section too large or malformed")]
    BadTrailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u32,
    },
    /// After the size, inside `;ext` up to CR.
    Extension,
    /// Expecting the LF that ends a size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Progress of one `feed` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that belong to the body; the rest (if `done`) is the next message.
    pub consumed: usize,
    pub done: bool,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the chunk being read, then bytes left in it.
    remaining: u64,
    line_len: usize,
    trailer_len: usize,
    last_chunk: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            line_len: 0,
            trailer_len: 0,
            last_chunk: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consume as much of `input` as belongs to the body, calling `on_data` with each run of
    /// payload bytes.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<Progress, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Size { digits } => {
                    if let Some(d) = hex(b) {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(ChunkError::SizeOverflow);
                        }
                        self.remaining = (self.remaining << 4) | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                        self.bump_line()?;
                    } else if digits == 0 {
                        return Err(ChunkError::BadSize);
                    } else {
                        self.last_chunk = self.remaining == 0;
                        match b {
                            b'\r' => self.state = State::SizeLf,
                            // RFC 9112 §7.1.1 allows BWS before ';'.
                            b';' | b' ' | b'\t' => self.state = State::Extension,
                            _ => return Err(ChunkError::BadSize),
                        }
                        self.bump_line()?;
                    }
                    i += 1;
                }
                State::Extension => {
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        // Bare LF or control bytes inside an extension are how parsers are
                        // made to disagree; refuse them.
                        b'\n' | 0..=0x08 | 0x0a..=0x1f | 0x7f => {
                            return Err(ChunkError::BadExtension)
                        }
                        _ => {}
                    }
                    self.bump_line()?;
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.line_len = 0;
                    self.state = if self.last_chunk {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                    i += 1;
                }
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let take = avail.min(self.remaining) as usize;
                    on_data(&input[i..i + take]);
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::Size { digits: 0 };
                    i += 1;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::TrailerLf { empty: true }
                    } else {
                        State::TrailerLine
                    };
                    self.bump_trailer()?;
                    i += 1;
                }
                State::TrailerLine => {
                    match b {
                        b'\r' => self.state = State::TrailerLf { empty: false },
                        b'\n' | 0 => return Err(ChunkError::BadTrailer),
                        _ => {}
                    }
                    self.bump_trailer()?;
                    i += 1;
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = if empty {
                        State::Done
                    } else {
                        State::TrailerStart
                    };
                    i += 1;
                }
            }
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn bump_line(&mut self) -> Result<(), ChunkError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE {
            return Err(ChunkError::LineTooLong);
        }
        Ok(())
    }

    fn bump_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILER_SIZE {
            return Err(ChunkError::BadTrailer);
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Progress), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let p = d.feed(input, |b| out.extend_from_slice(b))?;
        Ok((out, p))
    }

    #[test]
    fn decodes_and_stops_at_the_end_of_the_body() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET /next";
        let (data, p) = decode_all(body).unwrap();
        assert_eq!(data, b"hello world");
        assert!(p.done);
        assert_eq!(&body[p.consumed..], b"GET /next");
    }

    #[test]
    fn byte_at_a_time_gives_the_same_result() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for (n, b) in body.iter().enumerate() {
            let p = d
                .feed(std::slice::from_ref(b), |x| out.extend_from_slice(x))
                .unwrap();
            assert_eq!(p.consumed, 1);
            assert_eq!(p.done, n == body.len() - 1);
        }
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], ChunkError)] = &[
            (b"x\r\n", ChunkError::BadSize),
            (b"\r\n", ChunkError::BadSize),
            (b"10000000000000000\r\n", ChunkError::SizeOverflow),
            (b"5\nhello", ChunkError::BadSize),
            (b"5\r\nhelloXX", ChunkError::MissingCrlf),
            (b"5;a\nb\r\n", ChunkError::BadExtension),
            (b"0\r\nX: 1\n\r\n", ChunkError::BadTrailer),
        ];
        for (input, err) in cases {
            assert_eq!(
                decode_all(input).unwrap_err(),
                *err,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let long = [b"1;".as_slice(), &[b'a'; MAX_CHUNK_LINE]].concat();
        assert_eq!(decode_all(&long).unwrap_err(), ChunkError::LineTooLong);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_overread(input in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
            let mut d = ChunkedDecoder::new();
            let split = split.min(input.len());
            let mut total = 0;
            for part in [&input[..split], &input[split..]] {
                match d.feed(part, |_| {}) {
                    Ok(p) => {
                        prop_assert!(p.consumed <= part.len());
                        total += p.consumed;
                        if p.done { break; }
                    }
                    Err(_) => break,
                }
            }
            prop_assert!(total <= input.len());
        }

        #[test]
        fn any_split_decodes_like_one_piece(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6), split in 0usize..400) {
            let mut wire = Vec::new();
            let mut payload = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
                payload.extend_from_slice(c);
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let split = split.min(wire.len());
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.feed(&wire[..split], |b| out.extend_from_slice(b)).unwrap();
            let b = d.feed(&wire[split..], |b| out.extend_from_slice(b)).unwrap();
            prop_assert_eq!(a.consumed + b.consumed, wire.len());
            prop_assert!(b.done || (a.done && split == wire.len()));
            prop_assert_eq!(out, payload);
        }
    }
}
