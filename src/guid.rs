//! GUIDs, the identifiers of every Partner Center resource the gateway caches.
//!
//! Held as their 128-bit value: 16 bytes in every key and index entry instead of 36 characters,
//! case folded by construction. Only the canonical hyphenated 8-4-4-4-12 form parses (SPEC §3.2:
//! no braces, no bare 32 digits, any hex case), and the one parser serves the route, the
//! correlation IDs and the admin paths alike.

/// A GUID as its 128-bit value: 16 bytes in every key and index entry instead of 36 characters,
/// and case folded by construction.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(u128);

impl Guid {
    /// Parses the canonical 8-4-4-4-12 form in any hex case.
    pub fn parse(s: &str) -> Option<Guid> {
        Guid::parse_bytes(s.as_bytes())
    }

    /// [`Guid::parse`] for bytes (a header value); nothing else is a GUID.
    pub fn parse_bytes(b: &[u8]) -> Option<Guid> {
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return None;
        }
        // One pass, no per-character branching on the position: the hyphens are skipped by
        // taking the five groups in turn.
        let mut value = 0u128;
        for group in [&b[0..8], &b[9..13], &b[14..18], &b[19..23], &b[24..36]] {
            for &c in group {
                value = (value << 4) | u128::from(hex_digit(c)?);
            }
        }
        Some(Guid(value))
    }
}

/// The value of one hex digit, any case: one table load instead of three range tests.
fn hex_digit(c: u8) -> Option<u8> {
    const INVALID: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            table[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    let digit = TABLE[usize::from(c)];
    (digit != INVALID).then_some(digit)
}

impl std::fmt::Display for Guid {
    /// The canonical lower-case hyphenated form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl std::fmt::Debug for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60";

    #[test]
    fn guids_print_canonically() {
        let g = Guid::parse(&C.to_uppercase()).expect("guid");
        assert_eq!(g.to_string(), C);
        assert_eq!(Guid::parse(C), Some(g));
        assert_eq!(
            Guid::parse("00000000-0000-0000-0000-000000000001")
                .map(|g| g.to_string())
                .as_deref(),
            Some("00000000-0000-0000-0000-000000000001")
        );
    }

    #[test]
    fn only_the_canonical_form_parses() {
        for bad in [
            "",
            "{3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60}",
            "3b6d6e5a7f6f4c1f9d2a1b2c3d4e5f60",
            "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f6",
            "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f600",
            "3b6d6e5a+7f6f-4c1f-9d2a-1b2c3d4e5f60",
            "3b6d6e5g-7f6f-4c1f-9d2a-1b2c3d4e5f60",
            "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f6é",
        ] {
            assert_eq!(Guid::parse(bad), None, "{bad:?}");
        }
    }
}
