//! Parsers for the command line's values: durations, client-count lists and
//! fractions.

use std::time::Duration;

/// A value the command line cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a number followed by a unit.
    #[error("{0:?} is not a duration: use a number and a unit, e.g. 500ms, 10s, 2m")]
    Duration(String),
    /// Not a comma-separated list of positive integers.
    #[error("{0:?} is not a list of client counts: use e.g. 1,16,64,256")]
    ClientList(String),
    /// Not a number between 0 and 1.
    #[error("{0:?} is not a fraction between 0.0 and 1.0")]
    Fraction(String),
}

/// Parses `500ms`, `10s`, `1.5s`, `2m`, `1h` (a non-negative number and a unit:
/// `ms`, `s`, `m` or `h`).
pub fn duration(text: &str) -> Result<Duration, ParseError> {
    let bad = || ParseError::Duration(text.to_owned());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| bad())
}

/// A list of client counts, as `--sweep-clients` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCounts(pub Vec<usize>);

/// Parses `1,16,64,256`: positive client counts, in the order given, without
/// duplicates.
pub fn client_list(text: &str) -> Result<ClientCounts, ParseError> {
    let bad = || ParseError::ClientList(text.to_owned());
    let mut counts = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: usize = part.parse().map_err(|_| bad())?;
        if n == 0 || counts.contains(&n) {
            return Err(bad());
        }
        counts.push(n);
    }
    if counts.is_empty() {
        return Err(bad());
    }
    Ok(ClientCounts(counts))
}

/// Parses a number in `[0.0, 1.0]`.
pub fn fraction(text: &str) -> Result<f64, ParseError> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(ParseError::Fraction(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_known_unit() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration(" 0s "), Ok(Duration::ZERO));
        for bad in [
            "10",
            "s",
            "",
            "ten s",
            "-1s",
            "1.2.3s",
            "5 parsecs",
            "1e400s",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn client_lists_are_positive_and_distinct() {
        let list = |v: &[usize]| Ok(ClientCounts(v.to_vec()));
        assert_eq!(client_list("1,16,64,256"), list(&[1, 16, 64, 256]));
        assert_eq!(client_list(" 8 , 2 "), list(&[8, 2]));
        assert_eq!(client_list("4,"), list(&[4]));
        for bad in ["", ",", "0", "1,1", "a,2", "-3"] {
            assert!(client_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fractions_stay_in_range() {
        assert_eq!(fraction("0"), Ok(0.0));
        assert_eq!(fraction("0.95"), Ok(0.95));
        assert_eq!(fraction("1.0"), Ok(1.0));
        for bad in ["-0.1", "1.01", "NaN", "half"] {
            assert!(fraction(bad).is_err(), "{bad:?} accepted");
        }
    }
}
