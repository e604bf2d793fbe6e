//! One error type for the library; every message names the file, tensor or flag at fault.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// A file could not be read or is malformed.
    File { path: String, msg: String },
    /// A tensor is missing, mis-shaped or of an unsupported dtype.
    Tensor { file: String, name: String, msg: String },
    /// A config.json is missing fields or describes a variant we do not implement.
    Config { path: String, msg: String },
    /// Bad user input (flags, input tensors).
    Input(String),
    /// No usable device / backend.
    Device(String),
    /// The caller cancelled the run (Ctrl-C, a Cancel button).
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::File { path, msg } => write!(f, "{path}: {msg}"),
            Error::Tensor { file, name, msg } => write!(f, "{file}: tensor `{name}`: {msg}"),
            Error::Config { path, msg } => write!(f, "{path}: {msg}"),
            Error::Input(msg) => write!(f, "{msg}"),
            Error::Device(msg) => write!(f, "{msg}"),
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn file(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::File { path: path.into(), msg: msg.into() }
    }
    pub fn config(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { path: path.into(), msg: msg.into() }
    }
    pub fn tensor(file: impl Into<String>, name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Tensor { file: file.into(), name: name.into(), msg: msg.into() }
    }
}
