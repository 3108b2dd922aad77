//! `Retry-After` from the upstream (SPEC §6): delta-seconds or an HTTP-date, read as a cooldown
//! of 1 s to 300 s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderValue};
use partner_gateway::upstream::shield::{retry_after, MAX_COOLDOWN};
use proptest::prelude::*;

use crate::config;
use crate::strategies::*;

const SECOND: Duration = Duration::from_secs(1);

fn retry_after_of(value: &[u8], now: SystemTime) -> Option<Duration> {
    let v = HeaderValue::from_bytes(value).ok()?;
    let mut h = HeaderMap::new();
    h.insert(http::header::RETRY_AFTER, v);
    Some(retry_after(&h, now))
}

/// The latest instant `httpdate` handles (9999-12-31T23:59:59Z).
const LAST_DATE: u64 = 253_402_300_799;

/// `IMF-fixdate` (`Sun, 06 Nov 1994 08:49:37 GMT`) rewritten as asctime
/// (`Sun Nov  6 08:49:37 1994`), the obsolete form recipients must still accept.
fn asctime(imf: &str) -> String {
    let parts: Vec<&str> = imf.split(' ').collect();
    let [weekday, day, month, year, time, _gmt] = parts[..] else {
        panic!("not an IMF-fixdate: {imf}");
    };
    let day: u32 = day.parse().expect("day");
    format!(
        "{} {month} {day:>2} {time} {year}",
        weekday.trim_end_matches(',')
    )
}

proptest! {
    #![proptest_config(config(4096))]

    /// delta-seconds within u64, any leading zeros and surrounding whitespace: min(n, 300 s),
    /// and 0 waits 1 s.
    #[test]
    fn retry_after_delta_seconds(
        secs in prop_oneof![0u64..400, any::<u64>()],
        zeros in "0{0,3}",
        (lead, trail) in (ows(), ows()),
    ) {
        let text = format!("{lead}{zeros}{secs}{trail}");
        let want = if secs == 0 { SECOND } else { Duration::from_secs(secs).min(MAX_COOLDOWN) };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        prop_assert_eq!(retry_after_of(text.as_bytes(), now), Some(want), "{:?}", text);
    }

    /// An HTTP-date (IMF-fixdate or asctime) `offset` seconds from `now`: the time until it, at
    /// most 300 s; a date now or in the past waits 1 s.
    #[test]
    fn retry_after_http_dates(
        now_secs in 0u64..=LAST_DATE,
        offset in prop_oneof![-400i64..400, -20_000_000i64..20_000_000],
        obsolete in any::<bool>(),
    ) {
        let Some(date) = now_secs.checked_add_signed(offset).filter(|d| *d <= LAST_DATE) else {
            return Ok(());
        };
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let imf = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(date));
        let text = if obsolete { asctime(&imf) } else { imf };
        let want = if offset <= 0 {
            SECOND
        } else {
            Duration::from_secs(offset.unsigned_abs()).min(MAX_COOLDOWN)
        };
        prop_assert_eq!(retry_after_of(text.as_bytes(), now), Some(want), "{}", text);
    }

    /// Any value at any whole-second `now`: no panic, between 1 s and 300 s; text without a
    /// digit (neither a number nor a date) waits exactly 1 s. (At a `now` with a fraction of a
    /// second, a date less than a second ahead waits that fraction: see
    /// `retry_after_sub_second`.)
    #[test]
    fn retry_after_any_value(
        value in prop_oneof![header_bytes(40), "[ -/:-~]{0,30}".prop_map(String::into_bytes)],
        now_secs in prop_oneof![Just(1_700_000_000u64), 0u64..=LAST_DATE],
    ) {
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let Some(wait) = retry_after_of(&value, now) else {
            return Ok(());
        };
        prop_assert!((SECOND..=MAX_COOLDOWN).contains(&wait), "{:?} -> {:?}", value, wait);
        if !value.iter().any(u8::is_ascii_digit) {
            prop_assert_eq!(wait, SECOND);
        }
    }
}

/// A date in the next second, from a clock between two seconds: the cooldown is what is left of
/// it (never zero, never negative), as SPEC §6 says (only 0 or a past date mean 1 s).
#[test]
fn retry_after_sub_second() {
    let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_001));
    assert_eq!(
        retry_after_of(date.as_bytes(), now),
        Some(Duration::from_millis(750))
    );
}

proptest! {
    #![proptest_config(config(4096))]

    /// delta-seconds beyond u64 is still delta-seconds (RFC 9110 §10.2.3: `1*DIGIT`): the
    /// longest cooldown, like any other value over 300 s.
    #[test]
    fn retry_after_delta_seconds_beyond_u64(digits in "[1-9][0-9]{20,40}") {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        prop_assert_eq!(retry_after_of(digits.as_bytes(), now), Some(MAX_COOLDOWN), "{}", digits);
    }
}
