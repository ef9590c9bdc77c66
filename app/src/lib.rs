//! The `framecache` command line as a library, so that its tests share clip reading, model
//! loading and the baselines with the binary.
//!
//! Commands: [`run`] (one model over a clip), [`bench`] (reuse, speed and fidelity),
//! [`inspect`] (the imported graph), [`distill`] (heads trained onto a shared backbone), [`compress`] (the compression toolbox), [`compile`] (plan files for the phones), [`demo`] (live video in a window), [`bundle`] (multi-task
//! bundles: split, sharing, cached vs full). Shared parts: [`clip`] (PNG/JPEG folders and Y4M),
//! [`model`] (plan + sidecar), [`baseline`] (tract and ONNX Runtime), [`args`] (engine options
//! and the bundled assets); [`cli`] dispatches the commands.

pub mod args;
pub mod baseline;
pub mod bench;
pub mod bundle;
pub mod cli;
pub mod clip;
pub mod compile;
#[cfg(feature = "train")]
pub mod compress;
pub mod demo;
#[cfg(feature = "train")]
pub mod distill;
pub mod export;
pub mod inspect;
pub mod model;
pub mod quantize;
pub mod run;

/// Tunes the C allocator for training with candle on the CPU, which allocates and frees
/// tensors of megabytes to tens of megabytes at every step. glibc hands each allocation above
/// its mmap threshold a fresh mapping and unmaps it when freed, so every step faults the same
/// pages in again and the kernel zeroes them: on MobileNetV2's fine-tuning, 3.2 million page
/// faults and half the CPU time in the kernel. Here large blocks come from the heap (no mmap;
/// glibc still maps what a thread's arena cannot hold), the heap grows by 256 MiB at a time,
/// and freed memory is never given back (`-1`: a step frees gigabytes at once, so a finite
/// threshold trims it anyway), so the next step's tensors reuse pages already faulted in:
/// 1.2 million faults, training 30% faster, the peak 5% higher. The process is a training run
/// that ends. Other platforms and allocators: nothing to do.
#[cfg(feature = "train")]
pub(crate) fn training_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before training allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
