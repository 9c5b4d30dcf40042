//! Reading a config file and turning any failure into a located, human-readable error.

use std::ops::Range;
use std::path::Path;

use super::error::{ConfigError, Position};
use super::model::Config;
use super::schema::RawConfig;
use super::validate;

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
