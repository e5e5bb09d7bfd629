//! The integer rules of [`super::Command::Add`]: which stored values count as
//! integers, and why an add may be refused. Every replica applies them to the same
//! bytes, so they are part of the replicated format and must never change meaning.

/// Why an [`super::Command::Add`] changed nothing. The messages are the Redis
/// protocol's own wording, so that a Redis client sees the error it expects
/// whichever node (and API) carried the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AddError {
    /// The key's value is not a signed 64-bit decimal integer ([`parse_integer`]).
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// The sum does not fit in a signed 64-bit integer.
    #[error("increment or decrement would overflow")]
    Overflow,
}

/// Most characters of an `i64` in decimal: `-9223372036854775808`.
const MAX_DIGITS: usize = 20;

/// Reads `bytes` as a signed 64-bit decimal integer in canonical form: an
/// optional `-`, then digits without leading zeros (`0` alone is zero), nothing
/// else: no `+`, no spaces, no `-0`. These are the Redis rules for what INCR
/// accepts, so a value Redis would count as an integer counts here too, and only
/// those; there is exactly one text per number, so what an add stores reads back
/// unchanged.
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > MAX_DIGITS {
        return None;
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [] | [b'0', ..] => return None,
        _ => {}
    }
    // Accumulate negatively: the negative range is one larger, so i64::MIN parses.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative { Some(n) } else { n.checked_neg() }
}

/// Maps a signed number onto an unsigned one so that small magnitudes encode short.
pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn canonical_integers_parse() {
        for (text, want) in [
            ("0", 0),
            ("7", 7),
            ("-7", -7),
            ("10", 10),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_integer(text.as_bytes()), Some(want), "{text}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for text in [
            "",
            "-",
            "-0",
            "007",
            "+5",
            " 5",
            "5 ",
            "1.5",
            "1e3",
            "0x10",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "123456789012345678901",
            "--1",
            "\u{0}",
        ] {
            assert_eq!(parse_integer(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn zigzag_pins_small_values() {
        assert_eq!(
            [0, -1, 1, -2, 2].map(zigzag),
            [0, 1, 2, 3, 4],
            "the encoding is part of the log format"
        );
        assert_eq!(zigzag(i64::MIN), u64::MAX);
        assert_eq!(zigzag(i64::MAX), u64::MAX - 1);
    }

    proptest! {
        #[test]
        fn integers_round_trip_through_their_text(n in any::<i64>()) {
            prop_assert_eq!(parse_integer(n.to_string().as_bytes()), Some(n));
        }

        #[test]
        fn parse_accepts_only_canonical_text(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Some(n) = parse_integer(&bytes) {
                prop_assert_eq!(n.to_string().into_bytes(), bytes);
            }
        }

        #[test]
        fn zigzag_is_a_bijection(n in any::<i64>()) {
            prop_assert_eq!(unzigzag(zigzag(n)), n);
        }
    }
}
