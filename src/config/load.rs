//! Reading a config file and turning any failure into a located, human-readable error.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::model::Config;
use super::schema::RawConfig;
use super::validate;

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
pub(super) struct Located {
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

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validate `text` as if read from `path` (used by `load` and by tests).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let invalid = |span: Range<usize>, reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        position: Position::of(text, span.start),
        reason,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml's message may carry its own rendering of the line; keep the first line only so
        // our one-line format stays one line.
        let reason = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        invalid(span, reason)
    })?;
    validate::validate(path, text, raw).map_err(|l| invalid(l.span, l.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_chars() {
        let s = "a = 1\nbé = 2\n";
        assert_eq!(Position::of(s, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(s, 6), Position { line: 2, column: 1 });
        // 'é' is two bytes: offset 9 is the space after it, the third character.
        assert_eq!(Position::of(s, 9), Position { line: 2, column: 3 });
        assert_eq!(Position::of(s, 1000).line, 3);
    }
}
