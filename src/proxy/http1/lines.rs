//! Copying received header lines into a head being written.
//!
//! Owns one saving: kept lines that sit back to back in the received head, each exactly
//! `Name: value\r\n`, go out as one copy instead of four small ones per line. Which lines are
//! kept is the caller's decision (`request` and `response` own the forwarding rules); a line
//! received in another shape (other spacing) is written out in the canonical one.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

/// The kept lines of one received head, copied in runs.
pub(crate) struct LineCopy<'b> {
    head: &'b [u8],
    run: Range<usize>,
}

impl<'b> LineCopy<'b> {
    /// For the fields parsed out of `head` (the received head's bytes).
    pub(crate) fn new(head: &'b [u8]) -> LineCopy<'b> {
        LineCopy { head, run: 0..0 }
    }

    /// Append `h`'s line to `out`, now or at the next [`LineCopy::flush`]: flush before writing
    /// anything else to `out`.
    #[inline]
    pub(crate) fn keep(&mut self, h: &httparse::Header<'b>, out: &mut BytesMut) {
        match self.line_of(h) {
            Some(line) if !self.run.is_empty() && line.start == self.run.end => {
                self.run.end = line.end;
            }
            Some(line) => {
                self.flush(out);
                self.run = line;
            }
            None => {
                self.flush(out);
                out.put_slice(h.name.as_bytes());
                out.put_slice(b": ");
                out.put_slice(h.value);
                out.put_slice(b"\r\n");
            }
        }
    }

    /// Write the pending run.
    pub(crate) fn flush(&mut self, out: &mut BytesMut) {
        if !self.run.is_empty() {
            out.put_slice(&self.head[self.run.clone()]);
            self.run = 0..0;
        }
    }

    /// Where `h`'s line lies in the head, if it is exactly `Name: value\r\n` there.
    #[inline]
    fn line_of(&self, h: &httparse::Header<'b>) -> Option<Range<usize>> {
        let base = self.head.as_ptr() as usize;
        let start = (h.name.as_ptr() as usize).checked_sub(base)?;
        let name_end = start.checked_add(h.name.len())?;
        let value_start = (h.value.as_ptr() as usize).checked_sub(base)?;
        let end = value_start.checked_add(h.value.len())?;
        // An empty value's slice need not point into the head at all.
        let exact = !h.value.is_empty()
            && value_start == name_end + 2
            && matches!(
                self.head.get(name_end..end + 2)?,
                [b':', b' ', .., b'\r', b'\n']
            );
        exact.then_some(start..end + 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `raw` kept by `keep(name)`, written through a `LineCopy`; also how many
    /// copies it made.
    fn copy(raw: &[u8], keep: impl Fn(&str) -> bool) -> (String, usize) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = resp.parse(raw).unwrap() else {
            panic!("partial")
        };
        let head = &raw[..n];
        let mut out = BytesMut::new();
        let mut lines = LineCopy::new(head);
        let mut copies = 0;
        for h in resp.headers.iter() {
            if keep(h.name) {
                let before = lines.run.clone();
                lines.keep(h, &mut out);
                copies += usize::from(lines.run.start != before.start || lines.run.is_empty());
            }
        }
        lines.flush(&mut out);
        (String::from_utf8(out.to_vec()).unwrap(), copies)
    }

    #[test]
    fn adjacent_exact_lines_go_out_in_one_copy_and_dropped_ones_split_the_runs() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: a\r\nDate: b\r\nConnection: keep-alive\r\nContent-Type: c\r\nContent-Length: 3\r\n\r\nabc";
        let (out, copies) = copy(raw, |n| n != "Connection");
        assert_eq!(
            out,
            "Server: a\r\nDate: b\r\nContent-Type: c\r\nContent-Length: 3\r\n"
        );
        assert_eq!(copies, 2);
        let (all, copies) = copy(raw, |_| true);
        assert_eq!(
            all,
            "Server: a\r\nDate: b\r\nConnection: keep-alive\r\nContent-Type: c\r\nContent-Length: 3\r\n"
        );
        assert_eq!(copies, 1);
    }

    #[test]
    fn lines_in_other_shapes_are_written_canonically_in_order() {
        let raw = b"HTTP/1.1 200 OK\r\nA:1\r\nB:   2  \r\nC: 3\r\nD: \r\nE: 5\r\nF: 6\r\n\r\n";
        let (out, _) = copy(raw, |_| true);
        assert_eq!(out, "A: 1\r\nB: 2\r\nC: 3\r\nD: \r\nE: 5\r\nF: 6\r\n");
    }
}
