//! Where a configuration is wrong: the error a refused file gives (`FILE:LINE:COLUMN: error:
//! REASON`), the position type, and a failure located by its byte span before it is tied to a
//! file. Shared by reading (`load`) and validating (`validate`), so neither imports the other.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a configuration was refused. `Display` gives the `FILE:LINE:COLUMN: error: REASON` form
/// that editors and operators can jump to.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: error: cannot read the file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{}: error: {reason}", path.display(), position)]
    Invalid {
        path: PathBuf,
        position: Position,
        reason: String,
    },
}

/// 1-based line and column (in characters) of a byte offset in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub fn of(source: &str, offset: usize) -> Position {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A validation failure before it is tied to a file: the span it points at and the reason.
#[derive(Debug)]
pub(crate) struct Located {
    pub span: Range<usize>,
    pub reason: String,
}

impl Located {
    pub fn new(span: Range<usize>, reason: impl Into<String>) -> Self {
        Located {
            span,
            reason: reason.into(),
        }
    }
}
