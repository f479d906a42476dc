//! Freed tensor memory stays in the process (runtime::keep_freed_memory). This runs without the
//! test harness so that it allocates on the main thread, as training does, and so that it can
//! measure glibc's default first, in the same process, before the setting changes it.

/// Minor page faults of this process so far.
fn faults() -> i64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

/// Page faults over five steps shaped like a training step's: float tensors of 4 to 16 MB, 76 MB
/// in all (about 19,500 pages), all freed at the end.
fn faults_over_five_steps() -> i64 {
    let step = || {
        let tensors: Vec<tch::Tensor> = [1, 2, 4, 4, 4, 4]
            .iter()
            .map(|&m: &i64| tch::Tensor::full([m << 20], 1.0, (tch::Kind::Float, tch::Device::Cpu)))
            .collect();
        assert_eq!(tensors.len(), 6);
    };
    step();
    let before = faults();
    (0..5).for_each(|_| step());
    faults() - before
}

fn main() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(!image_learner::runtime::keep_freed_memory());
        // CI runs on glibc, where this check means something: a pass here would be a skip.
        assert!(std::env::var("CI").as_deref() != Ok("true"), "allocator: not glibc, so nothing was checked");
        println!("allocator: not glibc, nothing to check");
        return;
    }
    let default = faults_over_five_steps();
    assert!(default > 10_000, "glibc's default faulted only {default} pages in: this test no longer shows the setting's effect");
    assert!(image_learner::runtime::keep_freed_memory());
    let kept = faults_over_five_steps();
    assert!(kept < 1_000, "{kept} page faults for memory that was freed and allocated again (glibc's default: {default})");
    println!("allocator: {default} page faults with glibc's default, {kept} with freed memory kept: ok");
}
