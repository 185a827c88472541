//! Timestamps for the `before`/`after` operators (`ld-protocol.md` §3.6 "Timestamp parsing").
//!
//! A timestamp is either a JSON number of Unix milliseconds (truncated to a whole millisecond,
//! as the Go reference does) or an RFC 3339 date-time string with a mandatory zone. Instants are
//! nanoseconds since the Unix epoch as `i128`, which covers years 0000 to 9999 exactly.

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Converts Unix milliseconds to nanoseconds, truncating any fraction toward zero. Numbers beyond
/// any real date (JSON allows up to about 1.8e308) saturate instead of overflowing, so they still
/// compare as the far future or past.
pub(crate) fn from_unix_millis(millis: f64) -> Option<i128> {
    millis
        .is_finite()
        .then(|| (millis.trunc() as i128).saturating_mul(1_000_000))
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into nanoseconds since the Unix epoch;
/// `t` and `z` may be lower case. Offsets with hours up to 99 are accepted, as Go's parser does;
/// a leap second (`:60`) is not, as Go's is not. Delivery reads OFREP's `flagConfigLastModified`
/// with it too, so that Flagstaff has one reading of a date-time.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos: i128 = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        // Digits beyond nanosecond precision are accepted and ignored.
        for (i, digit) in fraction[..len].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + i128::from(digit - b'0');
            }
        }
        for _ in len..9 {
            nanos *= 10;
        }
        rest = &fraction[len..];
    }
    let offset_seconds: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if minutes > 59 {
                return None;
            }
            let magnitude = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset_seconds;
    Some(i128::from(seconds) * NANOS_PER_SECOND + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_instants_in_different_notations() {
        let a = parse_rfc3339("2017-12-06T00:00:00.000-07:00").unwrap();
        let b = parse_rfc3339("2017-12-06T07:00:00Z").unwrap();
        let c = from_unix_millis(1_512_543_600_000.0).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(parse_rfc3339("1970-01-01t00:00:00.5z"), Some(500_000_000));
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            "2017-12-06",
            "00:00:00.000-07.00",
            "2017-12-06X00:00:00.000-07:00",
            "",
            "1512543600000",
            "2017-12-06T00:00:00",
            "2017-02-30T00:00:00Z",
            "2017-12-06T24:00:00Z",
            "2017-12-06T00:00:00.Z",
            "2017-12-06T00:00:00+0700",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Found by the fuzzer: `1e300` milliseconds overflowed the conversion to nanoseconds.
    #[test]
    fn huge_millisecond_values_saturate() {
        let latest = parse_rfc3339("9999-12-31T23:59:59.999999999Z").unwrap();
        let earliest = parse_rfc3339("0000-01-01T00:00:00Z").unwrap();
        assert!(from_unix_millis(1e300).unwrap() > latest);
        assert!(from_unix_millis(-1e300).unwrap() < earliest);
        assert!(from_unix_millis(f64::MAX).is_some());
        assert_eq!(from_unix_millis(f64::INFINITY), None);
    }

    #[test]
    fn leap_days_and_old_dates() {
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_none());
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            Some(-NANOS_PER_SECOND)
        );
    }
}
