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

/// The run needs more memory than it may use.
#[derive(Debug)]
pub struct MemoryError(pub String);

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MemoryError {}

/// An error caused by the user's input or options; the message says what to fix.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Builds an `anyhow::Error` tagged as bad input.
pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
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

/// Picks the exit code for an error chain.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.downcast_ref::<InputError>().is_some()) {
        return EXIT_BAD_INPUT;
    }
    if err.chain().any(|e| e.downcast_ref::<MemoryError>().is_some()) {
        return EXIT_OUT_OF_MEMORY;
    }
    if err.chain().any(|e| e.downcast_ref::<crate::outputs::OutputError>().is_some()) {
        return EXIT_OUTPUT;
    }
    let text = format!("{err:#}").to_lowercase();
    if text.contains("out of memory") || text.contains("defaultcpuallocator: can't allocate") {
        return EXIT_OUT_OF_MEMORY;
    }
    EXIT_INTERNAL
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
}
