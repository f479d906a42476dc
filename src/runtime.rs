//! Process set-up that every command that computes shares: the allocator and the threads.

/// Sets up the process for a run: the allocator (`keep_freed_memory`), and the threads for
/// libtorch and the decoders: `--threads`, else `GALAXY_SLOTS`, else all cores.
pub fn configure(threads: Option<usize>) -> usize {
    keep_freed_memory();
    let n = threads
        .or_else(|| std::env::var("GALAXY_SLOTS").ok().and_then(|s| s.trim().parse().ok()))
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(n as i32);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    n
}

/// Keeps memory that libtorch frees in the process for the next training step, instead of
/// handing it back to the kernel. glibc's defaults return every block over 128 KiB (a threshold
/// it raises only as far as the largest block freed so far) and trim the heap's free top, so each
/// step's activations and gradients were mapped, faulted in and zeroed again: 1.2-1.5 million
/// page faults and 5-6 s of system time in a 3-epoch resnet18 run at 96x96, against about 0.3
/// million and 1-2 s with this. Blocks up to 32 MiB (glibc's ceiling for this setting) come from
/// the heap and a free top of up to 1 GiB is kept; the peak resident size stays near the peak in
/// use (0-14% above glibc's default in those runs).
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
