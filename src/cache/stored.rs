//! An L2 entry as bytes in Redis (SPEC §12.1): what L1 holds — status, whether the body is
//! settled (SPEC §15.1), content type, etag, body — and its stored time as wall-clock Unix milliseconds, so that `Age` and freshness agree
//! on every replica whatever its own clock's origin. A small line-based format with a version
//! tag: a value this build cannot read (another version, anything else) is a miss, not an error.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, StatusCode};

use crate::cache::store::Entry;

/// Version tag of the stored format: `pg2` adds the settled line. `pg1` (written by the
/// version before it) is still read, as a settled entry.
const FORMAT: &[u8] = b"pg2";
const FORMAT_1: &[u8] = b"pg1";

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `pg2`, stored time (Unix ms), status, `u` (unsettled) or `s`, content type, etag — one per
/// line — then the body.
pub fn encode(entry: &Entry, age: Duration) -> Bytes {
    let stored = unix_ms(SystemTime::now()).saturating_sub(age.as_millis() as u64);
    let text = |v: &Option<HeaderValue>| v.as_ref().map_or(&[][..], |v| v.as_bytes()).to_vec();
    let mut out = BytesMut::with_capacity(entry.body.len() + 128);
    for line in [
        FORMAT.to_vec(),
        stored.to_string().into_bytes(),
        entry.status.as_u16().to_string().into_bytes(),
        if entry.unsettled {
            b"u".to_vec()
        } else {
            b"s".to_vec()
        },
        text(&entry.content_type),
        text(&entry.etag),
    ] {
        out.put_slice(&line);
        out.put_u8(b'\n');
    }
    out.put_slice(&entry.body);
    out.freeze()
}

/// The entry `encode` wrote, its stored time turned into this process's clock; `None` for
/// anything else.
pub fn decode(bytes: &[u8]) -> Option<Entry> {
    let version = bytes.split(|&b| b == b'\n').next()?;
    let lines = match version {
        FORMAT => 7,
        FORMAT_1 => 6,
        _ => return None,
    };
    let mut fields = bytes.splitn(lines, |&b| b == b'\n');
    let mut next = || fields.next();
    next()?;
    let number = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    let stored = number(next()?)?;
    let status = StatusCode::from_u16(u16::try_from(number(next()?)?).ok()?).ok()?;
    let unsettled = match lines {
        7 => match next()? {
            b"u" => true,
            b"s" => false,
            _ => return None,
        },
        _ => false,
    };
    let header = |b: &[u8]| {
        (!b.is_empty())
            .then(|| HeaderValue::from_bytes(b).ok())
            .flatten()
    };
    let content_type = header(next()?);
    let etag = header(next()?);
    let body = Bytes::copy_from_slice(next()?);
    let age = Duration::from_millis(unix_ms(SystemTime::now()).saturating_sub(stored));
    let now = Instant::now();
    let stored_at = now.checked_sub(age).unwrap_or(now);
    Some(Entry::new(status, body, content_type, etag, stored_at).with_unsettled(unsettled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_their_age() {
        let entry = Entry::new(
            StatusCode::OK,
            Bytes::from_static(b"{\"id\":\"x\"}\n\nwith newlines"),
            Some(HeaderValue::from_static("application/json")),
            Some(HeaderValue::from_static("\"e1\"")),
            Instant::now(),
        );
        let bytes = encode(&entry, Duration::from_secs(7));
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.body, entry.body);
        assert_eq!(back.status, StatusCode::OK);
        assert_eq!(back.content_type, entry.content_type);
        assert_eq!(back.etag, entry.etag);
        let age = back.age(Instant::now());
        assert!(
            age >= Duration::from_secs(7) && age < Duration::from_secs(9),
            "{age:?}"
        );
        let negative = Entry::new(
            StatusCode::NOT_FOUND,
            Bytes::new(),
            None,
            None,
            Instant::now(),
        );
        let back = decode(&encode(&negative, Duration::ZERO)).expect("decodes");
        assert!(back.is_negative() && back.etag.is_none() && back.content_type.is_none());
        // An unsettled entry stays unsettled; the previous format reads as settled.
        let pending = Entry::new(
            StatusCode::OK,
            Bytes::from_static(b"{}"),
            None,
            None,
            Instant::now(),
        )
        .with_unsettled(true);
        assert!(
            decode(&encode(&pending, Duration::ZERO))
                .expect("decodes")
                .unsettled
        );
        let previous = decode(b"pg1\n1\n200\n\n\"e\"\n{}").expect("pg1 decodes");
        assert!(!previous.unsettled && previous.body == Bytes::from_static(b"{}"));
        for junk in [
            &b""[..],
            b"pg2\n1\n200\nx\n\n\n{}",
            b"pg1",
            b"pg2\n1\n200\n\n\n",
            b"pg1\nx\n200\n\n\n",
            b"pg1\n1\n99\n\n\n",
        ] {
            assert!(decode(junk).is_none(), "{junk:?}");
        }
    }
}
