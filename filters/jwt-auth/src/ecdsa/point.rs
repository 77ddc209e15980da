//! Curve points for verification: a sum kept in Jacobian coordinates, to
//! which affine table points are added. P-256, P-384 and P-521 alike (all
//! have a = -3).
//!
//! The formulas are the classic incomplete ones for a = -3 (mixed addition
//! "madd-2004-hmv", 8 products and 3 squares; doubling "dbl-2001-b"), with
//! the cases they do not cover (the identity, a point added to itself or
//! to its negative) taken by branches. The RustCrypto curve crates use
//! complete formulas, which cost about 11 products and 2 multiplications
//! by b per mixed addition, and need no branches because they must run in
//! constant time for signing; verification handles only public values.

use p256_014::elliptic_curve::point::AffineCoordinates;

use super::field::{Fe, Params};

/// A point other than the identity, in affine coordinates.
#[derive(Debug)]
pub struct Affine<C, const N: usize> {
    pub x: Fe<C, N>,
    pub y: Fe<C, N>,
}

impl<C, const N: usize> Clone for Affine<C, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, const N: usize> Copy for Affine<C, N> {}

impl<C: Params<N>, const N: usize> Affine<C, N> {
    /// The point of big-endian coordinates ([`Params::BYTES`] each), which
    /// the caller has checked are on the curve. `None` for another length.
    #[must_use]
    pub fn from_be_bytes(x: &[u8], y: &[u8]) -> Option<Self> {
        Some(Self {
            x: Fe::from_be_bytes(x)?,
            y: Fe::from_be_bytes(y)?,
        })
    }

    /// The same point as a `p256`/`p384`/`p521` affine point, which is on the
    /// curve. `None` for their identity (which has no coordinates) or a
    /// point of another curve size.
    #[must_use]
    pub fn from_point<A: AffineCoordinates>(point: &A) -> Option<Self> {
        if point
            .x()
            .as_ref()
            .iter()
            .chain(point.y().as_ref())
            .all(|&b| b == 0)
        {
            return None;
        }
        Self::from_be_bytes(point.x().as_ref(), point.y().as_ref())
    }

    /// The point's negative, `(x, -y)`.
    #[must_use]
    pub fn negate(&self) -> Self {
        Self {
            x: self.x,
            y: self.y.negate(),
        }
    }
}

/// A point in Jacobian coordinates, `(X / Z^2, Y / Z^3)`; the identity
/// when Z is 0.
#[derive(Debug)]
pub struct Jacobian<C, const N: usize> {
    x: Fe<C, N>,
    y: Fe<C, N>,
    z: Fe<C, N>,
}

impl<C, const N: usize> Clone for Jacobian<C, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, const N: usize> Copy for Jacobian<C, N> {}

impl<C: Params<N>, const N: usize> Jacobian<C, N> {
    pub const IDENTITY: Self = Self {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    /// The same point, Z = 1.
    #[must_use]
    pub fn from_affine(point: &Affine<C, N>) -> Self {
        Self {
            x: point.x,
            y: point.y,
            z: Fe::ONE,
        }
    }

    /// All points in affine form, with one field inversion for all of
    /// them (Montgomery's trick). `None` if any is the identity.
    #[must_use]
    pub fn batch_to_affine(points: &[Self]) -> Option<Vec<Affine<C, N>>> {
        // prefixes[i] = z_0 ... z_(i-1).
        let mut prefixes = Vec::with_capacity(points.len());
        let mut product = Fe::ONE;
        for point in points {
            if point.is_identity() {
                return None;
            }
            prefixes.push(product);
            product = product.mul(&point.z);
        }
        // Walking back, `inverse` is 1 / (z_0 ... z_i).
        let mut inverse = product.invert();
        let mut affine = Vec::with_capacity(points.len());
        for (point, prefix) in points.iter().zip(&prefixes).rev() {
            let z_inverse = inverse.mul(prefix);
            inverse = inverse.mul(&point.z);
            let zz_inverse = z_inverse.square();
            affine.push(Affine {
                x: point.x.mul(&zz_inverse),
                y: point.y.mul(&zz_inverse.mul(&z_inverse)),
            });
        }
        affine.reverse();
        Some(affine)
    }

    #[must_use]
    pub fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    /// `self += q`.
    pub fn add_affine(&mut self, q: &Affine<C, N>) {
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
    pub fn x_reduced_is(&self, r: &Fe<C, N>) -> bool {
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
fn r_plus_order_below_p<C: Params<N>, const N: usize>(r: &Fe<C, N>) -> Option<Fe<C, N>> {
    let mut words = [0u32; N];
    let mut carry = 0u64;
    for ((out, &a), &n) in words.iter_mut().zip(&r.to_canonical()).zip(&C::ORDER) {
        let sum = u64::from(a) + u64::from(n) + carry;
        *out = sum as u32;
        carry = sum >> 32;
    }
    let sum = Fe::from_words(words);
    (carry == 0 && sum.to_canonical() == words).then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::super::field::{P256, P384, P521};
    use super::*;

    /// The same tests for each curve, against its RustCrypto crate.
    macro_rules! curve_tests {
        ($name:ident, $krate:ident, $params:ty, $words:literal) => {
            mod $name {
                use super::*;
                use $krate::elliptic_curve::group::Group;
                use $krate::elliptic_curve::point::DecompressPoint;
                use $krate::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

                type Point = Jacobian<$params, $words>;

                fn affine(point: &ProjectivePoint) -> Affine<$params, $words> {
                    Affine::from_point(&point.to_affine()).unwrap()
                }

                /// Whether `ours` is the point `theirs`.
                fn same(ours: &Point, theirs: &ProjectivePoint) -> bool {
                    if bool::from(theirs.is_identity()) {
                        return ours.is_identity();
                    }
                    let theirs = affine(theirs);
                    let zz = ours.z.square();
                    ours.x.equals(&theirs.x.mul(&zz))
                        && ours.y.equals(&theirs.y.mul(&zz.mul(&ours.z)))
                }

                fn multiple(k: u64) -> ProjectivePoint {
                    ProjectivePoint::generator() * Scalar::from(k)
                }

                #[test]
                fn sums_agree_including_doubling_and_cancelling() {
                    let g = affine(&multiple(1));
                    let mut sum = Point::IDENTITY;
                    let mut expected = ProjectivePoint::identity();
                    // Triangular multiples: 1G, 3G, 6G, ...; at k = 3 the
                    // sum meets the doubling branch (3G + 3G).
                    for k in 1..40u64 {
                        let point = multiple(k);
                        sum.add_affine(&affine(&point));
                        expected += point;
                        assert!(same(&sum, &expected), "after adding {k}G");
                    }
                    let mut twice = Point::IDENTITY;
                    twice.add_affine(&g);
                    twice.add_affine(&g);
                    assert!(same(&twice, &multiple(2)));
                    twice.add_affine(&affine(&-multiple(2)));
                    assert!(twice.is_identity());
                    twice.add_affine(&g.negate());
                    assert!(same(&twice, &-multiple(1)));
                    assert!(
                        Affine::<$params, $words>::from_point(&AffinePoint::IDENTITY).is_none()
                    );
                }

                #[test]
                fn batch_conversion_gives_the_same_points() {
                    let mut points = Vec::new();
                    let mut sum = Point::IDENTITY;
                    for k in 1..20u64 {
                        sum.add_affine(&affine(&multiple(k)));
                        sum.double();
                        points.push(sum);
                    }
                    let converted = Point::batch_to_affine(&points).unwrap();
                    assert_eq!(converted.len(), points.len());
                    for (ours, affine) in points.iter().zip(&converted) {
                        let mut back = Point::from_affine(affine);
                        back.add_affine(&affine.negate());
                        assert!(back.is_identity());
                        let mut difference = *ours;
                        difference.add_affine(&affine.negate());
                        assert!(difference.is_identity());
                    }
                    points.push(Point::IDENTITY);
                    assert!(Point::batch_to_affine(&points).is_none());
                }

                #[test]
                fn the_order_is_the_crates() {
                    let minus_one =
                        Fe::<$params, $words>::from_be_bytes(&(-Scalar::ONE).to_bytes()).unwrap();
                    let order =
                        Fe::<$params, $words>::from_words(<$params as Params<$words>>::ORDER);
                    assert!(minus_one.add(&Fe::ONE).equals(&order));
                }

                #[test]
                fn the_x_check_accepts_x_and_x_minus_n_only() {
                    let mut sum = Point::IDENTITY;
                    sum.add_affine(&affine(&multiple(12344)));
                    sum.add_affine(&affine(&multiple(1)));
                    let x = affine(&multiple(12345)).x;
                    assert!(sum.x_reduced_is(&x));
                    assert!(!sum.x_reduced_is(&x.add(&Fe::ONE)));
                    assert!(!Point::IDENTITY.x_reduced_is(&x));
                }

                #[test]
                fn an_x_at_or_above_n_matches_its_reduction() {
                    // A point whose x lies in [n, p): x = n + t, small t.
                    let small = |t: u32| {
                        let mut words = [0; $words];
                        words[0] = t;
                        Fe::<$params, $words>::from_words(words)
                    };
                    let order =
                        Fe::<$params, $words>::from_words(<$params as Params<$words>>::ORDER);
                    let (t, point) = (0u32..200)
                        .find_map(|t| {
                            let bytes = order.add(&small(t)).to_be_bytes();
                            let x = FieldBytes::try_from(bytes.as_slice()).ok()?;
                            Option::<AffinePoint>::from(AffinePoint::decompress(&x, 0u8.into()))
                                .map(|point| (t, ProjectivePoint::from(point)))
                        })
                        .unwrap();
                    // Through a doubling, so Z is not 1.
                    let mut sum = Point::IDENTITY;
                    sum.add_affine(&affine(&point));
                    sum.double();
                    sum.add_affine(&affine(&-point));
                    assert!(sum.x_reduced_is(&small(t)), "x = n + {t}");
                    assert!(!sum.x_reduced_is(&small(t + 1)));
                }
            }
        };
    }

    curve_tests!(on_p256, p256_014, P256, 8);
    curve_tests!(on_p384, p384, P384, 12);
    curve_tests!(on_p521, p521, P521, 17);
}
