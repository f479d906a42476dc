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

/// A name or value for a message: whole up to 120 characters, else its start and end around
/// an ellipsis, so that a name of a megabyte cannot flood the log and the report.
pub fn short(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let head: String = text.chars().take(70).collect();
    let tail: String = text.chars().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}...{tail} ({} characters)", text.chars().count())
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

/// The last panic's message and place, kept by `capture_panics`' hook.
static PANIC: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);

/// Keeps each panic's message for `from_panic` instead of printing Rust's report of it. tch
/// panics on any libtorch error, out of memory included, and its message carries a C++ trace.
pub fn capture_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let place = info.location().map(|l| format!(" ({}:{})", l.file(), l.line())).unwrap_or_default();
        *PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some((first_line_of_torch_error(&text), place));
    }));
}

/// The error a caught panic stands for: memory ran out (as libtorch words it), or a bug.
pub fn from_panic() -> anyhow::Error {
    let (text, place) = PANIC.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
    let lower = text.to_lowercase();
    if lower.contains("out of memory") || lower.contains("can't allocate memory") {
        return error(ErrorKind::Memory, format!(
            "memory ran out while computing ({text}); use a smaller --batch-size or --image-size, or ask for more memory"
        ));
    }
    error(ErrorKind::Internal, format!("internal error, please report it: {text}{place}"))
}

/// libtorch's message without tch's wrapping and the C++ stack trace, on one line.
fn first_line_of_torch_error(text: &str) -> String {
    let text = text.strip_prefix("called `Result::unwrap()` on an `Err` value: ").unwrap_or(text);
    let text = text.strip_prefix("Torch(\"").unwrap_or(text);
    let text = text.strip_prefix("[enforce fail at ").and_then(|t| t.split_once("] ")).map_or(text, |(_, t)| t);
    let end = ["Exception raised from", "\\nframe #", "\nframe #"].iter().filter_map(|m| text.find(m)).min();
    let head = &text[..end.unwrap_or(text.len())];
    let one: Vec<&str> = head.split_whitespace().collect();
    let mut line = one.join(" ");
    if line.len() > 400 {
        let cut = (0..=400).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
        line.truncate(cut);
        line.push_str("...");
    }
    line
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

    #[test]
    fn long_names_are_shortened_for_messages() {
        assert_eq!(short("circle_000.png"), "circle_000.png");
        let long = format!("{}.png", "é".repeat(1_000_000));
        let s = short(&long);
        assert!(s.starts_with("éé") && s.ends_with("é.png (1000004 characters)"), "{}", &s[..20]);
        assert!(s.chars().count() < 150);
    }

    #[test]
    fn a_torch_error_loses_its_cpp_trace() {
        let text = "called `Result::unwrap()` on an `Err` value: Torch(\"[enforce fail at alloc_cpu.cpp:117] data. \
                    DefaultCPUAllocator: can't allocate memory: you tried to allocate 4503599627370496 bytes.\n\
                    Exception raised from alloc_cpu at /pytorch/c10/core/impl/alloc_cpu.cpp:117 (most recent call first):\n\
                    frame #0: c10::ThrowEnforceNotMet\")";
        let line = first_line_of_torch_error(text);
        assert_eq!(line, "data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4503599627370496 bytes.");
        // As tch words it: the message debug-printed, its line breaks as the two characters \n.
        let escaped = "Torch(\"[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: \
                       you tried to allocate 8 bytes. Error code 12 (Cannot allocate memory)\\nframe #0: c10::Throw\")";
        assert_eq!(
            first_line_of_torch_error(escaped),
            "err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes. Error code 12 (Cannot allocate memory)"
        );
        assert!(!line.contains('\n') && !line.contains("frame #0"));
        assert!(first_line_of_torch_error(&"x".repeat(1000)).len() <= 403);
    }
}
