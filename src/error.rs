//! Exit codes and the error kinds that choose them. Galaxy's `<stdio>` maps these codes.
use std::fmt;

/// Exit code for a run that finished.
pub const EXIT_OK: i32 = 0;
/// Exit code for an unexpected internal failure.
pub const EXIT_INTERNAL: i32 = 1;
/// Exit code for input the user can fix: bad ZIP, CSV, options.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code when memory ran out (allocation failure reported by libtorch), or the run would not
/// fit the memory Galaxy grants.
pub const EXIT_OUT_OF_MEMORY: i32 = 3;
/// Exit code when an output cannot be written (full disk, no permission).
pub const EXIT_OUTPUT: i32 = 4;
/// Exit codes for a run stopped by SIGINT / SIGTERM (128 + signal number), as shells report them.
pub const EXIT_SIGINT: i32 = 130;
pub const EXIT_SIGTERM: i32 = 143;

/// What went wrong, as far as the exit code is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input or options; the message says what to fix.
    BadInput,
    /// The run needs more memory than it has, or may use.
    Memory,
    /// An output cannot be written (a full disk, a read-only folder).
    Output,
    /// Anything else: a bug.
    Internal,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::BadInput => EXIT_BAD_INPUT,
            ErrorKind::Memory => EXIT_OUT_OF_MEMORY,
            ErrorKind::Output => EXIT_OUTPUT,
            ErrorKind::Internal => EXIT_INTERNAL,
        }
    }
}

/// The one error type of the tool: a kind and a message. It travels inside `anyhow::Error`, so
/// context added on the way up keeps the kind.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// An `anyhow::Error` of this kind.
pub fn error(kind: ErrorKind, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Error { kind, message: msg.into() })
}

/// Builds an `anyhow::Error` tagged as bad input.
pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    error(ErrorKind::BadInput, msg)
}

/// Returns early with a bad-input error formatted like `format!`.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err($crate::error::input_error(format!($($arg)*)))
    };
}

/// The message that a C++ shim call (csrc/) wrote into its error buffer: up to the first NUL.
pub fn shim_message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The kind of an error chain: the first tagged error in it, else memory exhaustion as libtorch
/// words it, else internal.
pub fn kind_of(err: &anyhow::Error) -> ErrorKind {
    if let Some(e) = err.chain().find_map(|e| e.downcast_ref::<Error>()) {
        return e.kind;
    }
    let text = format!("{err:#}").to_lowercase();
    if text.contains("out of memory") || text.contains("defaultcpuallocator: can't allocate") {
        return ErrorKind::Memory;
    }
    ErrorKind::Internal
}

/// Picks the exit code for an error chain.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    kind_of(err).exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_message_stops_at_the_first_nul_or_the_buffer_end() {
        let mut buf = [0u8; 16];
        buf[..5].copy_from_slice(b"boom!");
        buf[6] = b'x'; // after the NUL: not part of the message
        assert_eq!(shim_message(&buf), "boom!");
        assert_eq!(shim_message(b"no terminator"), "no terminator");
        assert_eq!(shim_message(&[0u8; 4]), "");
    }

    #[test]
    fn the_kind_survives_context_and_picks_the_exit_code() {
        use anyhow::Context;
        let e = Err::<(), _>(error(ErrorKind::Output, "cannot write x")).context("writing the outputs").unwrap_err();
        assert_eq!(exit_code(&e), EXIT_OUTPUT);
        assert_eq!(exit_code(&input_error("bad")), EXIT_BAD_INPUT);
        assert_eq!(exit_code(&anyhow::anyhow!("CUDA out of memory. Tried to allocate")), EXIT_OUT_OF_MEMORY);
        assert_eq!(exit_code(&anyhow::anyhow!("something else")), EXIT_INTERNAL);
    }
}
