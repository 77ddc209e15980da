//! The rows' multiply-adds: `t_j += a_j * b + n_j * m` over whole rows.
//! In Wasm these run on SIMD128, two 32x32->64 products per
//! `i64x2.extmul` instruction; elsewhere they are plain loops, which the
//! compiler vectorises for the native target.

#[cfg(target_arch = "wasm32")]
pub(super) use simd::{float_row, mul_add, mul_add_one, relaxed_madd_is_fused};

#[cfg(not(target_arch = "wasm32"))]
pub(super) use portable::{float_row, mul_add, mul_add_one};

/// The reference: also what runs natively and on any limbs that do not
/// fill a SIMD block.
mod portable {
    /// `t_j += a_j * b + n_j * m` for each `j`.
    #[inline]
    pub fn mul_add(t: &mut [u64], a: &[u32], b: u32, n: &[u32], m: u32) {
        let (b, m) = (u64::from(b), u64::from(m));
        for ((t, &a), &n) in t.iter_mut().zip(a).zip(n) {
            *t += u64::from(a) * b + u64::from(n) * m;
        }
    }

    /// `t_j += n_j * m` for each `j`.
    #[inline]
    pub fn mul_add_one(t: &mut [u64], n: &[u32], m: u32) {
        let m = u64::from(m);
        for (t, &n) in t.iter_mut().zip(n) {
            *t += u64::from(n) * m;
        }
    }

    /// For 52-bit limbs in `f64`s ([`super::super::float`]): adds
    /// `a_j * b + n_j * m` to `t`, each product's low part to `t_j` and
    /// its high part to `t_(j+1)`; `t` is one longer than `a` and `n`.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub fn float_row(t: &mut [i64], a: &[f64], b: f64, n: &[f64], m: f64) {
        use super::super::float::split;
        for (j, (&a, &n)) in a.iter().zip(n).enumerate() {
            let (ab_high, ab_low) = split(a, b);
            let (nm_high, nm_low) = split(n, m);
            if let Some([low, high, ..]) = t.get_mut(j..) {
                *low += ab_low + nm_low;
                *high += ab_high + nm_high;
            }
        }
    }
}

/// SIMD128 versions. The loads and stores are `unsafe` only because
/// `core::arch::wasm32` has no safe way to move a `v128` to or from
/// memory; each one goes through a reference to exactly 16 bytes.
///
/// Two things the compiler must not see, or it rewrites the
/// `i64x2.extmul_*_i32x4_u` products into general `i64x2.mul`, which V8
/// has to emulate with several 32-bit multiplies (an earlier version of
/// the public operation took 65 µs that way, against 33 µs):
/// - a limb block read as four scalars (it becomes two zero-extending
///   loads), hence `load_u32x4`;
/// - the splat of `b` and `m`, which it widens once outside the loop;
///   a volatile read of the splat in each iteration keeps the widening,
///   and so the `extmul`, inside. That read is a load from the stack.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod simd {
    use core::arch::wasm32::{
        i64x2_add, u32x4_splat, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4, v128, v128_load,
        v128_store,
    };

    use super::portable;

    #[target_feature(enable = "simd128")]
    #[inline]
    fn load_u32x4(limbs: &[u32; 4]) -> v128 {
        // SAFETY: 16 readable bytes behind a reference; v128_load takes
        // unaligned addresses.
        unsafe { v128_load(limbs.as_ptr().cast()) }
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    fn load_u64x2(columns: &[u64; 2]) -> v128 {
        // SAFETY: as in load_u32x4.
        unsafe { v128_load(columns.as_ptr().cast()) }
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    fn store_u64x2(columns: &mut [u64; 2], value: v128) {
        // SAFETY: 16 writable bytes behind an exclusive reference;
        // v128_store takes unaligned addresses.
        unsafe { v128_store(columns.as_mut_ptr().cast(), value) }
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    fn opaque(value: &v128) -> v128 {
        // SAFETY: a read through a reference to a live local.
        unsafe { core::ptr::read_volatile(value) }
    }

    /// Adds `low` to columns 0 and 1 of the block, `high` to 2 and 3.
    #[target_feature(enable = "simd128")]
    #[inline]
    fn add_block(t: &mut [u64; 4], low: v128, high: v128) {
        if let [low_pair, high_pair] = t.as_chunks_mut::<2>().0 {
            store_u64x2(low_pair, i64x2_add(load_u64x2(low_pair), low));
            store_u64x2(high_pair, i64x2_add(load_u64x2(high_pair), high));
        }
    }

    /// `t_j += a_j * b + n_j * m` for each `j`.
    ///
    /// Two blocks per loop turn, so one read of the splats serves eight
    /// limbs: about 3% of the public operation in V8, and as much again
    /// in [`mul_add_one`]. Four blocks per turn were slower.
    #[target_feature(enable = "simd128")]
    #[inline]
    pub fn mul_add(t: &mut [u64], a: &[u32], b: u32, n: &[u32], m: u32) {
        let len = t.len().min(a.len()).min(n.len());
        let (Some(t), Some(a), Some(n)) = (t.get_mut(..len), a.get(..len), n.get(..len)) else {
            return;
        };
        let (b_splat, m_splat) = (u32x4_splat(b), u32x4_splat(m));
        let (t_blocks, t_rest) = t.as_chunks_mut::<4>();
        let (a_blocks, a_rest) = a.as_chunks::<4>();
        let (n_blocks, n_rest) = n.as_chunks::<4>();
        let mut t_pairs = t_blocks.chunks_exact_mut(2);
        let mut a_pairs = a_blocks.chunks_exact(2);
        let mut n_pairs = n_blocks.chunks_exact(2);
        for ((t, a), n) in (&mut t_pairs).zip(&mut a_pairs).zip(&mut n_pairs) {
            let (b, m) = (opaque(&b_splat), opaque(&m_splat));
            for ((t, a), n) in t.iter_mut().zip(a).zip(n) {
                block(t, load_u32x4(a), b, load_u32x4(n), m);
            }
        }
        let remainder = t_pairs.into_remainder().iter_mut();
        for ((t, a), n) in remainder.zip(a_pairs.remainder()).zip(n_pairs.remainder()) {
            let (b, m) = (opaque(&b_splat), opaque(&m_splat));
            block(t, load_u32x4(a), b, load_u32x4(n), m);
        }
        portable::mul_add(t_rest, a_rest, b, n_rest, m);
    }

    /// `t_j += a_j * b + n_j * m` on one block.
    #[target_feature(enable = "simd128")]
    #[inline]
    fn block(t: &mut [u64; 4], a: v128, b: v128, n: v128, m: v128) {
        let low = i64x2_add(u64x2_extmul_low_u32x4(a, b), u64x2_extmul_low_u32x4(n, m));
        let high = i64x2_add(u64x2_extmul_high_u32x4(a, b), u64x2_extmul_high_u32x4(n, m));
        add_block(t, low, high);
    }

    /// `t_j += n_j * m` for each `j`, two blocks per turn as [`mul_add`].
    #[target_feature(enable = "simd128")]
    #[inline]
    pub fn mul_add_one(t: &mut [u64], n: &[u32], m: u32) {
        let len = t.len().min(n.len());
        let (Some(t), Some(n)) = (t.get_mut(..len), n.get(..len)) else {
            return;
        };
        let m_splat = u32x4_splat(m);
        let (t_blocks, t_rest) = t.as_chunks_mut::<4>();
        let (n_blocks, n_rest) = n.as_chunks::<4>();
        let mut t_pairs = t_blocks.chunks_exact_mut(2);
        let mut n_pairs = n_blocks.chunks_exact(2);
        for (t, n) in (&mut t_pairs).zip(&mut n_pairs) {
            let m = opaque(&m_splat);
            for (t, n) in t.iter_mut().zip(n) {
                block_one(t, load_u32x4(n), m);
            }
        }
        for (t, n) in t_pairs.into_remainder().iter_mut().zip(n_pairs.remainder()) {
            block_one(t, load_u32x4(n), opaque(&m_splat));
        }
        portable::mul_add_one(t_rest, n_rest, m);
    }

    /// `t_j += n_j * m` on one block.
    #[target_feature(enable = "simd128")]
    #[inline]
    fn block_one(t: &mut [u64; 4], n: v128, m: v128) {
        add_block(
            t,
            u64x2_extmul_low_u32x4(n, m),
            u64x2_extmul_high_u32x4(n, m),
        );
    }

    /// [`super::portable::float_row`] on relaxed SIMD: two limbs per turn,
    /// each product split by two `f64x2.relaxed_madd` (see
    /// [`super::super::float`]); the high parts go one column up by a lane
    /// shuffle with the previous turn's, so each column block is loaded and
    /// stored once. `a` and `n` have an even length.
    #[target_feature(enable = "simd128,relaxed-simd")]
    #[inline]
    pub fn float_row(t: &mut [i64], a: &[f64], b: f64, n: &[f64], m: f64) {
        use super::super::float::{HIGH_BIAS, LOW_BIAS};
        use core::arch::wasm32::{
            f64x2_add, f64x2_relaxed_madd, f64x2_splat, f64x2_sub, i64x2_extract_lane,
            i64x2_shuffle, i64x2_splat, i64x2_sub,
        };
        let (b, m) = (f64x2_splat(b), f64x2_splat(m));
        let (high_bias, low_bias) = (f64x2_splat(HIGH_BIAS), f64x2_splat(LOW_BIAS));
        // Two parts of each kind per lane, so the patterns' bias twice.
        let high_bits = i64x2_splat(2 * HIGH_BIAS.to_bits() as i64);
        let low_bits = i64x2_splat(2 * LOW_BIAS.to_bits() as i64);
        let mut previous_high = i64x2_splat(0);
        let (t_pairs, _) = t.as_chunks_mut::<2>();
        let (a_pairs, _) = a.as_chunks::<2>();
        let (n_pairs, _) = n.as_chunks::<2>();
        for ((t, a), n) in t_pairs.iter_mut().zip(a_pairs).zip(n_pairs) {
            let (a, n) = (load_f64x2(a), load_f64x2(n));
            let ab_high = f64x2_relaxed_madd(a, b, high_bias);
            let nm_high = f64x2_relaxed_madd(n, m, high_bias);
            let ab_low =
                f64x2_relaxed_madd(a, b, f64x2_add(f64x2_sub(high_bias, ab_high), low_bias));
            let nm_low =
                f64x2_relaxed_madd(n, m, f64x2_add(f64x2_sub(high_bias, nm_high), low_bias));
            let low = i64x2_sub(i64x2_add(ab_low, nm_low), low_bits);
            let high = i64x2_sub(i64x2_add(ab_high, nm_high), high_bits);
            // Columns j and j + 1 take the previous pair's second high
            // part and this pair's first.
            let carried = i64x2_shuffle::<1, 2>(previous_high, high);
            previous_high = high;
            store_i64x2(t, i64x2_add(load_i64x2(t), i64x2_add(low, carried)));
        }
        if let Some(last) = t.get_mut(a.len()) {
            *last += i64x2_extract_lane::<1>(previous_high);
        }
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    fn load_f64x2(limbs: &[f64; 2]) -> v128 {
        // SAFETY: as in load_u32x4.
        unsafe { v128_load(limbs.as_ptr().cast()) }
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    fn load_i64x2(columns: &[i64; 2]) -> v128 {
        // SAFETY: as in load_u32x4.
        unsafe { v128_load(columns.as_ptr().cast()) }
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    fn store_i64x2(columns: &mut [i64; 2], value: v128) {
        // SAFETY: as in store_u64x2.
        unsafe { v128_store(columns.as_mut_ptr().cast(), value) }
    }

    /// Whether `f64x2.relaxed_madd` is fused here: the product of
    /// `2^52 + 1` with itself is `2^104 + 2^53 + 1`, which a double
    /// rounds to `2^104 + 2^53`; only a fused multiply-add sees the 1.
    /// The operand goes through a volatile read, so that the compiler
    /// cannot fold the answer from its own arithmetic.
    #[must_use]
    pub fn relaxed_madd_is_fused() -> bool {
        // A plain function around the check, for OnceLock (functions with
        // target features are not closures).
        fused_check()
    }

    #[target_feature(enable = "simd128,relaxed-simd")]
    fn fused_check() -> bool {
        use core::arch::wasm32::{
            f64x2_extract_lane, f64x2_mul, f64x2_neg, f64x2_relaxed_madd, f64x2_splat,
        };
        let x = f64x2_splat(opaque_f64(&4_503_599_627_370_497.0));
        let rounded = f64x2_mul(x, x);
        let error = f64x2_relaxed_madd(x, x, f64x2_neg(rounded));
        f64x2_extract_lane::<0>(error) == 1.0
    }

    fn opaque_f64(value: &f64) -> f64 {
        // SAFETY: a read through a reference to a live value.
        unsafe { core::ptr::read_volatile(value) }
    }
}
