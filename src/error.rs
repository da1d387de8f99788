//! Typed errors for the library. `Problems` carries every input problem found at once
//! (file + message), so `check` and `run` can report them together before any teacher call.

use std::fmt;
use std::path::PathBuf;

/// One problem with the user's input: which file, where (if known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }
    pub fn at(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad user input (config, taxonomy, templates, schemas). Exit code 2.
    #[error("{} problem(s) found:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Input(Vec<Problem>),
    /// The output directory holds a run whose configuration differs. Exit code 3.
    #[error("{0}")]
    RunMismatch(String),
    /// The teacher could not be reached during the pre-flight probe. Exit code 4.
    #[error("teacher unavailable: {0}")]
    TeacherUnavailable(String),
    /// Another process holds the output directory's lock (see `dirlock`). Exit code 5.
    #[error("{0}")]
    Busy(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    /// The process exit code for this error class (decided in one place).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::RunMismatch(_) => 3,
            Error::TeacherUnavailable(_) => 4,
            Error::Busy(_) => 5,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
