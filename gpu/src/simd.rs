//! Which vector instructions the CPU has, for the hand-written CPU paths (frozen encoder,
//! scorer). The binary is built for baseline x86-64, so it runs anywhere; its hot loops also
//! exist compiled for AVX2 and are chosen at run time.

/// Whether the CPU runs AVX2 (checked once; the standard library caches the answer).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
