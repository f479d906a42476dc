//! Process set-up that every command that computes shares: the allocator and the threads.

/// Sets up the process for a run: the allocator (`keep_freed_memory`), and the threads for
/// libtorch and the decoders: `--threads`, else `GALAXY_SLOTS`, else all cores; never more than
/// the cores this process may use, since extra threads only contend for them (a warning says so).
pub fn configure(threads: Option<usize>) -> usize {
    keep_freed_memory();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (n, warning) = thread_count(threads, std::env::var("GALAXY_SLOTS").ok().as_deref(), cores);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    tch::set_num_threads(n as i32);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    n
}

/// The thread count from `--threads`, `GALAXY_SLOTS` and the cores available, with a warning
/// when the one asked for is more than the cores.
fn thread_count(asked: Option<usize>, slots: Option<&str>, cores: usize) -> (usize, Option<String>) {
    let (n, source) = match asked.filter(|&n| n > 0) {
        Some(n) => (n, "--threads"),
        None => match slots.and_then(|s| s.trim().parse::<usize>().ok()).filter(|&n| n > 0) {
            Some(n) => (n, "GALAXY_SLOTS"),
            None => return (cores, None),
        },
    };
    if n <= cores {
        return (n, None);
    }
    (cores, Some(format!("{source} {n} is more than the {cores} cores this run may use; using {cores}")))
}

/// Keeps memory that libtorch frees in the process for the next training step, instead of
/// handing it back to the kernel. glibc's defaults return every block over 128 KiB (a threshold
/// it raises only as far as the largest block freed so far) and trim the heap's free top, so each
/// step's activations and gradients would be mapped, faulted in and zeroed again (the page faults
/// and system time saved are in docs/performance.md, "How the arithmetic runs"). Blocks up to
/// 32 MiB (glibc's ceiling for this setting) come from the heap and a free top of up to 1 GiB is
/// kept, so the peak resident size stays near the peak in use.
/// Returns whether glibc took both settings (always false on another C library).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes two tuning values of glibc's allocator; both are in range.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Hands the memory that the allocator keeps free (`keep_freed_memory`) back to the kernel, at
/// the end of a phase whose buffers will not be needed again: after training, the kept pages are
/// the steps' activations, and writing the Best Model maps its own buffers beside them, which
/// made that moment the run's peak. One call costs a few milliseconds. Returns whether memory
/// was given back.
pub fn give_back_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; 0 keeps no pad at the heap's top.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::thread_count;

    #[test]
    fn threads_are_capped_at_the_cores_with_a_warning() {
        assert_eq!(thread_count(Some(2), None, 4), (2, None));
        assert_eq!(thread_count(None, Some(" 3 "), 4), (3, None));
        assert_eq!(thread_count(None, Some("many"), 4), (4, None));
        assert_eq!(thread_count(None, None, 4), (4, None));
        let (n, w) = thread_count(Some(1000), Some("2"), 4);
        assert_eq!(n, 4);
        assert_eq!(w.unwrap(), "--threads 1000 is more than the 4 cores this run may use; using 4");
        let (n, w) = thread_count(None, Some("64"), 2);
        assert_eq!((n, w.unwrap().starts_with("GALAXY_SLOTS 64")), (2, true));
    }
}
