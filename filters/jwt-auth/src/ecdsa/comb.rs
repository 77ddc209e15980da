//! Fixed-base combs: every multiple `d 2^(W i) P` a scalar product needs,
//! computed once, so `k P` is a sum of table points with no doublings.

use super::field::Params;
use super::point::{Affine, Jacobian};

/// A comb with `W`-bit windows and signed digits over a scalar of
/// [`Params::BITS`] bits:
/// the points `d 2^(W i) P` for every window `i` and `d = 1..=2^(W-1)`, in
/// affine form. A scalar is recoded into digits in `-2^(W-1)..=2^(W-1)`,
/// and a negative digit adds the negated point, so a window needs half the
/// points an unsigned one would.
pub struct Comb<C, const N: usize, const W: usize> {
    /// [`Self::HALF`] points per window, window 0 first; digit `d` at
    /// `d - 1`.
    multiples: Vec<Affine<C, N>>,
}

impl<C: Params<N>, const N: usize, const W: usize> Comb<C, N, W> {
    /// Points per window: the largest digit's magnitude.
    const HALF: usize = 1 << (W - 1);
    /// Windows for a scalar and the carry out of its top window (which
    /// holds `BITS mod W` bits, so its digit stays within `2^(W-1)`).
    const WINDOWS: usize = C::BITS / W + 1;
    /// The table's size in bytes.
    pub const BYTES: usize = Self::WINDOWS * Self::HALF * core::mem::size_of::<Affine<C, N>>();

    /// The comb of `point` (this runs once per key). Every window's base
    /// `2^(W i) P` by doublings, then its multiples by mixed additions,
    /// each batch turned affine with one field inversion. `None` only if
    /// a multiple were the identity, which cannot happen for a point on
    /// the curve: n is prime, and neither d nor 2^(W i) is a multiple.
    #[must_use]
    pub fn new(point: &Affine<C, N>) -> Option<Self> {
        const { assert!(W >= 2 && W <= 9, "window_bits reads at most two bytes") };
        let mut bases = Vec::with_capacity(Self::WINDOWS);
        let mut base = Jacobian::from_affine(point);
        bases.push(base);
        while bases.len() < Self::WINDOWS {
            for _ in 0..W {
                base.double();
            }
            bases.push(base);
        }
        let bases = Jacobian::batch_to_affine(&bases)?;
        let mut projective = Vec::with_capacity(Self::WINDOWS * Self::HALF);
        for base in &bases {
            let mut multiple = Jacobian::from_affine(base);
            projective.push(multiple);
            for _ in 1..Self::HALF {
                multiple.add_affine(base);
                projective.push(multiple);
            }
        }
        let multiples = Jacobian::batch_to_affine(&projective)?;
        Some(Self { multiples })
    }

    /// `acc += k P`, `k` (of at most [`Params::BITS`] bits) given as its
    /// big-endian bytes.
    pub fn add_product(&self, acc: &mut Jacobian<C, N>, k: &[u8]) {
        let mut carry = 0;
        for (i, window) in self.multiples.chunks_exact(Self::HALF).enumerate() {
            // 0..=2^W; above 2^(W-1) it is the digit value - 2^W, and
            // the window above gets 1 more.
            let value = window_bits::<W>(k, i) + carry;
            carry = usize::from(value > Self::HALF);
            if carry == 0 {
                if let Some(multiple) = value.checked_sub(1).and_then(|at| window.get(at)) {
                    acc.add_affine(multiple);
                }
            } else if let Some(multiple) = ((1 << W) - value)
                .checked_sub(1)
                .and_then(|at| window.get(at))
            {
                acc.add_affine(&multiple.negate());
            }
        }
    }
}

/// Window `i`'s bits of `k` (big-endian bytes): `W` bits from bit `W i`,
/// with zeros above the top byte. `W` is at most 9, so a window spans at
/// most two bytes.
fn window_bits<const W: usize>(k: &[u8], i: usize) -> usize {
    let low_bit = W * i;
    let byte_at = |from_lsb: usize| {
        k.len()
            .checked_sub(1 + from_lsb)
            .and_then(|at| k.get(at))
            .map_or(0, |&b| usize::from(b))
    };
    let pair = byte_at(low_bit / 8) | (byte_at(low_bit / 8 + 1) << 8);
    (pair >> (low_bit % 8)) & ((1 << W) - 1)
}

#[cfg(test)]
mod tests {
    use super::super::field::{P256, P384, P521};
    use super::*;

    /// The same tests for each curve, against its RustCrypto crate.
    macro_rules! comb_tests {
        ($name:ident, $krate:ident, $params:ty, $words:literal) => {
            mod $name {
                use super::*;
                use $krate::elliptic_curve::group::Group;
                use $krate::elliptic_curve::ops::Reduce;
                use $krate::{FieldBytes, ProjectivePoint, Scalar};

                fn affine(point: ProjectivePoint) -> Affine<$params, $words> {
                    Affine::from_point(&point.to_affine()).unwrap()
                }

                /// Whether the comb's product `k P` is the crate's.
                fn comb_agrees<const W: usize>(
                    comb: &Comb<$params, $words, W>,
                    point: ProjectivePoint,
                    k: &Scalar,
                ) -> bool {
                    let mut sum = Jacobian::IDENTITY;
                    comb.add_product(&mut sum, &k.to_bytes());
                    let Some(expected) = Affine::from_point(&(point * k).to_affine()) else {
                        return sum.is_identity();
                    };
                    // Equal points sum to the identity with the expected
                    // one's negative; a wrong point or its negative does not.
                    sum.add_affine(&Affine::negate(&expected));
                    sum.is_identity()
                }

                /// Scalars whose digits sit at the recoding's edges for
                /// every width: a window's bits at 0, 2^(W-1) - 1,
                /// 2^(W-1), 2^(W-1) + 1 and all ones, carries running
                /// through every window (n - 1, -2^k), and 0.
                fn edge_scalars() -> Vec<Scalar> {
                    let small = [0u64, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129];
                    let mut scalars: Vec<Scalar> = small
                        .into_iter()
                        .chain([255, 256, 0xdead_beef, u64::MAX])
                        .map(Scalar::from)
                        .collect();
                    let mut power = Scalar::ONE;
                    for _ in 0..<$params as Params<$words>>::BITS {
                        scalars.push(power);
                        scalars.push(-power);
                        power = power.double();
                    }
                    scalars
                }

                #[test]
                fn combs_of_every_width_compute_products() {
                    let g = ProjectivePoint::generator();
                    let q = g * Scalar::from(0x1234_5678_9abc_def0u64);
                    let five = Comb::<$params, $words, 5>::new(&affine(q)).unwrap();
                    let six = Comb::<$params, $words, 6>::new(&affine(q)).unwrap();
                    let seven = Comb::<$params, $words, 7>::new(&affine(g)).unwrap();
                    for k in edge_scalars() {
                        assert!(comb_agrees(&five, q, &k), "5 bits, {k:?}");
                        assert!(comb_agrees(&six, q, &k), "6 bits, {k:?}");
                        assert!(comb_agrees(&seven, g, &k), "7 bits, {k:?}");
                    }
                }

                proptest::proptest! {
                    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

                    /// Random scalars through an 8-bit comb.
                    #[test]
                    fn combs_compute_products_of_random_scalars(
                        bytes in proptest::collection::vec(proptest::num::u8::ANY, <$params as Params<$words>>::BYTES),
                    ) {
                        let bytes = FieldBytes::try_from(bytes.as_slice()).unwrap();
                        let k = <Scalar as Reduce<FieldBytes>>::reduce(&bytes);
                        let g = ProjectivePoint::generator();
                        proptest::prop_assert!(comb_agrees(eight_bit_comb(), g, &k));
                    }
                }

                /// G's comb with 8-bit windows, built once for the tests.
                fn eight_bit_comb() -> &'static Comb<$params, $words, 8> {
                    static COMB: std::sync::OnceLock<Comb<$params, $words, 8>> =
                        std::sync::OnceLock::new();
                    COMB.get_or_init(|| Comb::new(&affine(ProjectivePoint::generator())).unwrap())
                }
            }
        };
    }

    comb_tests!(on_p256, p256_014, P256, 8);
    comb_tests!(on_p384, p384, P384, 12);
    comb_tests!(on_p521, p521, P521, 17);
}
