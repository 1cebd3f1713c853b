//! The trial-list CSV read by `voiceprint eval`.
//!
//! Header `enroll,test,target` (any order, extra columns ignored), optional `enroll_channel` and
//! `test_channel`. Paths are relative to the CSV's folder (absolute paths are kept). `target` is `1` or `0`
//! (`true`/`false` also accepted). Channel cells are kept as text and parsed by the caller; an empty
//! cell means the default channel handling.

use std::path::{Path, PathBuf};

/// Errors reading a trial list. Every row error names its 1-based line in the file.
#[derive(Debug, thiserror::Error)]
pub enum TrialListError {
    /// The file could not be opened or read.
    #[error("cannot read trial list {path}: {source}")]
    Io {
        /// The trial list.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CSV itself is malformed (e.g. a row with the wrong number of fields).
    #[error("{path}: malformed CSV at line {line}: {message}")]
    Csv {
        /// The trial list.
        path: PathBuf,
        /// 1-based line, 0 when unknown.
        line: u64,
        /// What the CSV parser reported.
        message: String,
    },
    /// A required column is missing from the header.
    #[error("{path}: missing column `{column}` in the header (need enroll,test,target)")]
    MissingColumn {
        /// The trial list.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
    },
    /// A row has an empty enroll or test path.
    #[error("{path}: line {line}: empty `{column}` path")]
    EmptyPath {
        /// The trial list.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// `enroll` or `test`.
        column: &'static str,
    },
    /// A `target` cell is not 1/0/true/false.
    #[error("{path}: line {line}: target must be 1 or 0, got `{value}`")]
    BadTarget {
        /// The trial list.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The offending cell.
        value: String,
    },
    /// The list has a header but no trials.
    #[error("{path}: no trials")]
    Empty {
        /// The trial list.
        path: PathBuf,
    },
}

/// One row of a trial list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// 1-based line in the CSV, for messages.
    pub line: u64,
    /// Enrolment audio, resolved against the CSV's folder.
    pub enroll: PathBuf,
    /// Channel of the enrolment audio (`left`, `right`, `mix` or an index), if given.
    pub enroll_channel: Option<String>,
    /// Test audio, resolved against the CSV's folder.
    pub test: PathBuf,
    /// Channel of the test audio, if given.
    pub test_channel: Option<String>,
    /// Whether enrolment and test are the same speaker.
    pub target: bool,
}

/// A parsed trial list.
#[derive(Debug, Clone)]
pub struct TrialList {
    /// The trials in file order.
    pub trials: Vec<Trial>,
}

impl TrialList {
    /// Reads and validates a trial list from a file.
    pub fn from_path(path: &Path) -> Result<Self, TrialListError> {
        let file = std::fs::File::open(path).map_err(|source| TrialListError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_reader(file, base, path)
    }

    /// Reads a trial list from any reader; relative paths are resolved against `base`, and `name` is
    /// used in error messages.
    pub fn from_reader<R: std::io::Read>(
        reader: R,
        base: &Path,
        name: &Path,
    ) -> Result<Self, TrialListError> {
        let mut bytes = Vec::new();
        let mut reader = reader;
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| TrialListError::Csv {
                path: name.to_path_buf(),
                line: 0,
                message: e.to_string(),
            })?;
        // On CRLF files the csv crate's record position points at the `\n` of the previous line
        // (its line counter is one short there), so lines are counted from the first byte of
        // the record itself.
        let line_at = |pos: &csv::Position| {
            let mut start = usize::try_from(pos.byte()).map_or(bytes.len(), |b| b.min(bytes.len()));
            while bytes.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                start += 1;
            }
            1 + bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64
        };
        let csv_err = |e: csv::Error| {
            let line = e.position().map_or(0, line_at);
            TrialListError::Csv {
                path: name.to_path_buf(),
                line,
                message: e.to_string(),
            }
        };
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(bytes.as_slice());
        let headers = rdr.headers().map_err(csv_err)?.clone();
        let col =
            |column: &'static str| headers.iter().position(|h| h.eq_ignore_ascii_case(column));
        let required = |column: &'static str| {
            col(column).ok_or(TrialListError::MissingColumn {
                path: name.to_path_buf(),
                column,
            })
        };
        let (i_enroll, i_test, i_target) =
            (required("enroll")?, required("test")?, required("target")?);
        let (i_ech, i_tch) = (col("enroll_channel"), col("test_channel"));
        let mut trials = Vec::new();
        for record in rdr.records() {
            let record = record.map_err(csv_err)?;
            let line = record.position().map_or(0, line_at);
            let cell = |i: usize| record.get(i).unwrap_or("");
            let opt = |i: Option<usize>| i.map(cell).filter(|s| !s.is_empty()).map(str::to_owned);
            let path_of = |i: usize, column: &'static str| {
                let p = cell(i);
                if p.is_empty() {
                    Err(TrialListError::EmptyPath {
                        path: name.to_path_buf(),
                        line,
                        column,
                    })
                } else {
                    Ok(base.join(p))
                }
            };
            let target = match cell(i_target).to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                other => {
                    return Err(TrialListError::BadTarget {
                        path: name.to_path_buf(),
                        line,
                        value: other.to_owned(),
                    });
                }
            };
            trials.push(Trial {
                line,
                enroll: path_of(i_enroll, "enroll")?,
                enroll_channel: opt(i_ech),
                test: path_of(i_test, "test")?,
                test_channel: opt(i_tch),
                target,
            });
        }
        if trials.is_empty() {
            return Err(TrialListError::Empty {
                path: name.to_path_buf(),
            });
        }
        Ok(Self { trials })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TrialList, TrialListError> {
        TrialList::from_reader(text.as_bytes(), Path::new("/data"), Path::new("t.csv"))
    }

    #[test]
    fn parses_rows_and_resolves_paths() {
        let t = parse("enroll,test,target\na.wav,b/c.wav,1\n/abs/x.wav, y.wav ,0\n").unwrap();
        assert_eq!(t.trials.len(), 2);
        assert_eq!(t.trials[0].enroll, Path::new("/data/a.wav"));
        assert_eq!(t.trials[0].test, Path::new("/data/b/c.wav"));
        assert!(t.trials[0].target);
        assert_eq!(t.trials[1].enroll, Path::new("/abs/x.wav"));
        assert_eq!(t.trials[1].test, Path::new("/data/y.wav"));
        assert!(!t.trials[1].target);
        assert_eq!(t.trials[1].line, 3);
    }

    /// Windows line ends (Python's csv module writes them by default) give the same line numbers.
    #[test]
    fn crlf_lists_number_lines_like_lf_lists() {
        let lf = parse("enroll,test,target\na.wav,b.wav,1\na.wav,c.wav,0\n").unwrap();
        let crlf = parse("enroll,test,target\r\na.wav,b.wav,1\r\na.wav,c.wav,0\r\n").unwrap();
        let lines = |t: &TrialList| t.trials.iter().map(|t| t.line).collect::<Vec<_>>();
        assert_eq!(lines(&lf), vec![2, 3]);
        assert_eq!(lines(&crlf), vec![2, 3]);
        assert_eq!(crlf.trials[1].test, Path::new("/data/c.wav"));
    }

    #[test]
    fn optional_channel_columns_in_any_order() {
        let t = parse("target,test_channel,test,enroll,enroll_channel\n1,right,b.wav,a.wav,\n0,,b.wav,a.wav,1\n")
            .unwrap();
        assert_eq!(t.trials[0].test_channel.as_deref(), Some("right"));
        assert_eq!(t.trials[0].enroll_channel, None);
        assert_eq!(t.trials[1].enroll_channel.as_deref(), Some("1"));
        assert_eq!(t.trials[1].test_channel, None);
    }

    #[test]
    fn errors_name_the_problem_and_line() {
        let e = parse("enroll,target\na.wav,1\n").unwrap_err();
        assert!(
            matches!(e, TrialListError::MissingColumn { column: "test", .. }),
            "{e}"
        );
        let e = parse("enroll,test,target\na.wav,b.wav,1\na.wav,b.wav,yes\n").unwrap_err();
        assert!(
            matches!(e, TrialListError::BadTarget { line: 3, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("line 3"));
        let e = parse("enroll,test,target\na.wav,b.wav,1\nc.wav,1\n").unwrap_err();
        assert!(matches!(e, TrialListError::Csv { line: 3, .. }), "{e}");
        let e = parse("enroll,test,target\n,b.wav,1\n").unwrap_err();
        assert!(
            matches!(
                e,
                TrialListError::EmptyPath {
                    line: 2,
                    column: "enroll",
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            parse("enroll,test,target\n"),
            Err(TrialListError::Empty { .. })
        ));
        assert!(matches!(
            TrialList::from_path(Path::new("/nonexistent/t.csv")),
            Err(TrialListError::Io { .. })
        ));
    }
}
