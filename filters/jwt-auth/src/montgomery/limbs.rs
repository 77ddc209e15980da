//! Limb plumbing shared by the integer code (27-bit limbs in `u32`s) and
//! the float code (52-bit limbs, kept as `u64`s beside their `f64`s):
//! bytes to limbs and back, comparison, subtraction, and the set-up
//! arithmetic. Each takes the limb width; the arithmetic runs in `u64`.

/// A limb type: `u32` or `u64`, holding at most 52 bits.
pub(super) trait Limb: Copy + Ord {
    fn to_u64(self) -> u64;
    /// The low bits of `value`; callers mask to the limb width first.
    fn from_u64(value: u64) -> Self;
}

impl Limb for u32 {
    fn to_u64(self) -> u64 {
        u64::from(self)
    }

    fn from_u64(value: u64) -> Self {
        value as u32
    }
}

impl Limb for u64 {
    fn to_u64(self) -> u64 {
        self
    }

    fn from_u64(value: u64) -> Self {
        value
    }
}

fn mask(bits: u32) -> u64 {
    (1 << bits) - 1
}

/// Big-endian bytes to `limbs` little-endian limbs of `bits` bits (the
/// bytes must fit).
pub(super) fn from_be<L: Limb>(bytes: &[u8], limbs: usize, bits: u32) -> Vec<L> {
    let mut out = vec![L::from_u64(0); limbs];
    let mut slots = out.iter_mut();
    // At most bits - 1 + 8 bits wait in `acc`: 59 for 52-bit limbs.
    let (mut acc, mut have) = (0u64, 0u32);
    for &byte in bytes.iter().rev() {
        acc |= u64::from(byte) << have;
        have += 8;
        if have >= bits {
            if let Some(slot) = slots.next() {
                *slot = L::from_u64(acc & mask(bits));
            }
            acc >>= bits;
            have -= bits;
        }
    }
    if let Some(slot) = slots.next() {
        *slot = L::from_u64(acc);
    }
    out
}

/// Limbs of `bits` bits to `len` big-endian bytes (the value must fit).
pub(super) fn to_be<L: Limb>(limbs: &[L], len: usize, bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut limbs = limbs.iter();
    let (mut acc, mut have) = (0u64, 0u32);
    for byte in out.iter_mut().rev() {
        if have < 8 {
            if let Some(&limb) = limbs.next() {
                acc |= limb.to_u64() << have;
            }
            have += bits;
        }
        *byte = acc as u8;
        acc >>= 8;
        have -= 8;
    }
    out
}

/// `a < b` for equally long limb slices.
pub(super) fn less_than<L: Limb>(a: &[L], b: &[L]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo `2^(bits * len)`.
pub(super) fn sub_assign<L: Limb>(a: &mut [L], b: &[L], bits: u32) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = x.to_u64().wrapping_sub(y.to_u64()).wrapping_sub(borrow);
        *x = L::from_u64(d & mask(bits));
        borrow = d >> 63;
    }
}

/// `-n0^-1 mod 2^bits` for odd `n0`, by Newton's iteration (each step
/// doubles the correct low bits; `n0` is its own inverse mod 8, so six
/// steps reach 64).
pub(super) fn neg_inverse(n0: u64, bits: u32) -> u64 {
    let mut x = n0;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(x)));
    }
    x.wrapping_neg() & mask(bits)
}

/// `2^count mod n`, by doubling.
pub(super) fn doubled<L: Limb>(n: &[L], count: usize, bits: u32) -> Vec<L> {
    let mut x = vec![L::from_u64(0); n.len()];
    if let Some(first) = x.first_mut() {
        *first = L::from_u64(1);
    }
    for _ in 0..count {
        let mut carry = 0u64;
        for limb in &mut x {
            let shifted = (limb.to_u64() << 1) | carry;
            *limb = L::from_u64(shifted & mask(bits));
            carry = shifted >> bits;
        }
        if carry != 0 || !less_than(&x, n) {
            sub_assign(&mut x, n, bits);
        }
    }
    x
}
