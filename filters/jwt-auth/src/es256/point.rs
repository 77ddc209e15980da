//! P-256 points for verification: a sum kept in Jacobian coordinates, to
//! which affine table points are added.
//!
//! The formulas are the classic incomplete ones for a = -3 (mixed addition
//! "madd-2004-hmv", 8 products and 3 squares; doubling "dbl-2001-b"), with
//! the cases they do not cover (the identity, a point added to itself or
//! to its negative) taken by branches. `p256` uses complete formulas,
//! which cost about 11 products and 2 multiplications by b per mixed
//! addition, and need no branches because they must run in constant time
//! for signing; verification handles only public values.

use p256_014::elliptic_curve::point::AffineCoordinates;

use super::field::Fe;

/// The group order n, least significant word first.
const ORDER: [u32; 8] = [
    0xfc63_2551,
    0xf3b9_cac2,
    0xa717_9e84,
    0xbce6_faad,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0xffff_ffff,
];

/// A point other than the identity, in affine coordinates.
#[derive(Clone, Copy, Debug)]
pub struct Affine {
    pub x: Fe,
    pub y: Fe,
}

impl Affine {
    /// The point's negative, `(x, -y)`.
    #[must_use]
    pub fn negate(&self) -> Self {
        Self {
            x: self.x,
            y: self.y.negate(),
        }
    }
}

impl From<&p256_014::AffinePoint> for Affine {
    /// `p256`'s point with the same coordinates (its identity has none,
    /// and would come out as (0, 0), which is not on the curve).
    fn from(point: &p256_014::AffinePoint) -> Self {
        Self {
            x: Fe::from_be_bytes(&point.x().into()),
            y: Fe::from_be_bytes(&point.y().into()),
        }
    }
}

/// A point in Jacobian coordinates, `(X / Z^2, Y / Z^3)`; the identity
/// when Z is 0.
#[derive(Clone, Copy, Debug)]
pub struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    pub const IDENTITY: Self = Self {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    #[must_use]
    pub fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    /// `self += q`.
    pub fn add_affine(&mut self, q: &Affine) {
        if self.is_identity() {
            *self = Self {
                x: q.x,
                y: q.y,
                z: Fe::ONE,
            };
            return;
        }
        let z1z1 = self.z.square();
        let u2 = q.x.mul(&z1z1);
        let s2 = q.y.mul(&self.z.mul(&z1z1));
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y);
        if h.is_zero() {
            // Same x: the same point (double it) or its negative.
            if r.is_zero() {
                self.double();
            } else {
                *self = Self::IDENTITY;
            }
            return;
        }
        let hh = h.square();
        let hhh = hh.mul(&h);
        let v = self.x.mul(&hh);
        let x3 = r.square().sub(&hhh).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&hhh));
        let z3 = self.z.mul(&h);
        *self = Self {
            x: x3,
            y: y3,
            z: z3,
        };
    }

    /// `self = 2 self`.
    pub fn double(&mut self) {
        if self.is_identity() {
            return;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let difference = self.x.sub(&delta);
        let alpha = difference
            .double()
            .add(&difference)
            .mul(&self.x.add(&delta));
        let four_beta = beta.double().double();
        let x3 = alpha.square().sub(&four_beta.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let eight_gamma_squared = gamma.square().double().double().double();
        let y3 = alpha.mul(&four_beta.sub(&x3)).sub(&eight_gamma_squared);
        *self = Self {
            x: x3,
            y: y3,
            z: z3,
        };
    }

    /// Whether the point's affine x, reduced mod n, is `r` (0 < r < n),
    /// as ECDSA verification asks. The point must not be the identity.
    ///
    /// No inversion: x = X / Z^2, so check X = r Z^2, and, since p < 2n,
    /// X = (r + n) Z^2 where r + n < p.
    #[must_use]
    pub fn x_reduced_is(&self, r: &Fe) -> bool {
        if self.is_identity() {
            return false;
        }
        let zz = self.z.square();
        if r.mul(&zz).equals(&self.x) {
            return true;
        }
        r_plus_order_below_p(r).is_some_and(|candidate| candidate.mul(&zz).equals(&self.x))
    }
}

/// `r + n` when it is below p (then it is a second x that reduces to r).
fn r_plus_order_below_p(r: &Fe) -> Option<Fe> {
    let mut words = [0u32; 8];
    let mut carry = 0u64;
    for ((out, &a), &n) in words.iter_mut().zip(&r.to_canonical()).zip(&ORDER) {
        let sum = u64::from(a) + u64::from(n) + carry;
        *out = sum as u32;
        carry = sum >> 32;
    }
    let sum = Fe::from_words(words);
    (carry == 0 && sum.to_canonical() == words).then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256_014::elliptic_curve::group::Group;
    use p256_014::elliptic_curve::point::DecompressPoint;
    use p256_014::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

    fn affine(point: &AffinePoint) -> Affine {
        Affine::from(point)
    }

    /// Whether `ours` is the point `theirs`.
    fn same(ours: &Jacobian, theirs: &ProjectivePoint) -> bool {
        if bool::from(theirs.is_identity()) {
            return ours.is_identity();
        }
        let theirs = affine(&theirs.to_affine());
        let zz = ours.z.square();
        ours.x.equals(&theirs.x.mul(&zz)) && ours.y.equals(&theirs.y.mul(&zz.mul(&ours.z)))
    }

    fn multiple(k: u64) -> ProjectivePoint {
        ProjectivePoint::generator() * Scalar::from(k)
    }

    #[test]
    fn sums_agree_with_p256_including_doubling_and_cancelling() {
        let g = affine(&multiple(1).to_affine());
        let mut sum = Jacobian::IDENTITY;
        let mut expected = ProjectivePoint::identity();
        // Triangular multiples: 1G, 3G, 6G, ...; at k = 3 the sum meets
        // the doubling branch (3G + 3G).
        for k in 1..40u64 {
            let point = multiple(k);
            sum.add_affine(&affine(&point.to_affine()));
            expected += point;
            assert!(same(&sum, &expected), "after adding {k}G");
        }
        let mut twice = Jacobian::IDENTITY;
        twice.add_affine(&g);
        twice.add_affine(&g);
        assert!(same(&twice, &multiple(2)));
        twice.add_affine(&affine(&(-multiple(2)).to_affine()));
        assert!(twice.is_identity());
        twice.add_affine(&g.negate());
        assert!(same(&twice, &-multiple(1)));
    }

    #[test]
    fn the_x_check_accepts_x_and_x_minus_n_only() {
        let point = multiple(12345);
        let mut sum = Jacobian::IDENTITY;
        sum.add_affine(&affine(&multiple(12344).to_affine()));
        sum.add_affine(&affine(&multiple(1).to_affine()));
        let x = Fe::from_be_bytes(&point.to_affine().x().into());
        assert!(sum.x_reduced_is(&x));
        assert!(!sum.x_reduced_is(&x.add(&Fe::ONE)));
        assert!(!Jacobian::IDENTITY.x_reduced_is(&x));
    }

    #[test]
    fn an_x_at_or_above_n_matches_its_reduction() {
        // Find a point whose x lies in [n, p): x = n + t for small t.
        let order = Fe::from_words(ORDER);
        let found = (0u32..200).find_map(|t| {
            let x = order.add(&Fe::from_words([t, 0, 0, 0, 0, 0, 0, 0]));
            let bytes = FieldBytes::from(x.to_be_bytes());
            Option::<AffinePoint>::from(AffinePoint::decompress(&bytes, 0u8.into()))
                .map(|point| (t, point))
        });
        let (t, point) = found.unwrap();
        let mut sum = Jacobian::IDENTITY;
        // Through a doubling, so Z is not 1.
        let half = affine(&point);
        sum.add_affine(&half);
        sum.double();
        sum.add_affine(&affine(&(-ProjectivePoint::from(point)).to_affine()));
        let r = Fe::from_words([t, 0, 0, 0, 0, 0, 0, 0]);
        assert!(sum.x_reduced_is(&r), "x = n + {t}");
        assert!(!sum.x_reduced_is(&Fe::from_words([t + 1, 0, 0, 0, 0, 0, 0, 0])));
    }
}
