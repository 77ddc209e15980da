//! Durations in the protobuf JSON mapping Envoy's configs use: `"1.5s"`,
//! `"0.020s"`, `"60s"`. Envoy accepts only seconds with an `s` suffix there,
//! so we do too rather than invent `ms`/`m` units users cannot take back to
//! Envoy.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string does not end in `s`.
    #[error("must be seconds with an \"s\" suffix, like \"1.5s\", got {0:?}")]
    MissingSuffix(String),
    /// The number part is not a non-negative decimal.
    #[error("not a non-negative decimal number of seconds: {0:?}")]
    NotANumber(String),
    /// More than nanosecond precision, as protobuf's Duration forbids.
    #[error("at most 9 fractional digits (nanoseconds), got {0:?}")]
    TooPrecise(String),
}

/// Parses a protobuf JSON duration such as `"1.5s"`.
///
/// # Errors
/// [`DurationError`] when the text is not `<seconds>[.<fraction>]s`.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// assert_eq!(filter_common::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(filter_common::parse_duration("10ms").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let number = text
        .strip_suffix('s')
        .ok_or_else(|| DurationError::MissingSuffix(text.to_owned()))?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(DurationError::NotANumber(text.to_owned()));
    }
    if fraction.len() > 9 {
        return Err(DurationError::TooPrecise(text.to_owned()));
    }
    let secs: u64 = whole
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_owned()))?;
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        let padded = format!("{fraction:0<9}");
        padded
            .parse()
            .map_err(|_| DurationError::NotANumber(text.to_owned()))?
    };
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_whole_and_fractional_seconds() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.020s"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
    }

    #[test]
    fn refuses_other_units_and_garbage() {
        for bad in ["10ms", "1m", "", "s", "-1s", "1.s2", "1e3s", ".5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(
            parse_duration("1.0000000001s"),
            Err(DurationError::TooPrecise(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".*") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn round_trips_millis(ms in 0u64..10_000_000) {
            let text = format!("{}.{:03}s", ms / 1000, ms % 1000);
            proptest::prop_assert_eq!(parse_duration(&text), Ok(Duration::from_millis(ms)));
        }
    }
}
