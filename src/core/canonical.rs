//! Which members have a compact form: canonical decimal ids, canonical
//! lowercase UUIDs and, for the member set only, a short ASCII prefix
//! followed by a canonical decimal id (`user:42`, see [`parse_prefixed`]).
//! A member is stored compactly only if formatting the compact value gives
//! back exactly the same string, so "007", "-1", "user:042",
//! "18446744073709551616" and uppercase UUIDs stay strings.

/// A member sorted by the container that keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind<'a> {
    /// Digits only, no leading zero (except "0" itself), fits in a u64.
    Number(u64),
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase hex, as 128 bits.
    Uuid(u128),
    /// Everything else, kept as it is.
    Text(&'a str),
}

/// Longest canonical number: u64::MAX has 20 digits.
pub(crate) const NUMBER_MAX_LEN: usize = 20;
/// Length of a canonical UUID.
pub(crate) const UUID_LEN: usize = 36;
/// Longest prefix of a prefixed id: a prefixed id then fits in the
/// formatting buffer of a UUID (16 + 20 = 36 bytes).
pub(crate) const PREFIX_MAX_LEN: usize = UUID_LEN - NUMBER_MAX_LEN;

pub(crate) fn classify(member: &str) -> Kind<'_> {
    let bytes = member.as_bytes();
    if let Some(number) = parse_number(bytes) {
        Kind::Number(number)
    } else if let Some(uuid) = parse_uuid(bytes) {
        Kind::Uuid(uuid)
    } else {
        Kind::Text(member)
    }
}

/// The value of a canonical decimal id, `None` for anything else.
#[inline]
pub(crate) fn parse_number(bytes: &[u8]) -> Option<u64> {
    let (&first, rest) = bytes.split_first()?;
    if bytes.len() > NUMBER_MAX_LEN
        || !first.is_ascii_digit()
        || (first == b'0' && !rest.is_empty())
    {
        return None;
    }
    let mut value = u64::from(first - b'0');
    if bytes.len() < NUMBER_MAX_LEN {
        // 19 digits or fewer cannot overflow.
        for &byte in rest {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value = value * 10 + u64::from(digit);
        }
    } else {
        for &byte in rest {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
        }
    }
    Some(value)
}

/// A member of the form `<prefix><canonical decimal id>`: the id is the
/// whole run of ASCII digits at the end of the member, canonical as for
/// [`parse_number`]; the prefix is the rest, 2 to `PREFIX_MAX_LEN` bytes of
/// printable ASCII (no space) that start with a letter and end in
/// punctuation (`user:`, `cust-`, `acct_`, `v2/org#`; not `-` of "-1" or
/// `1.` of "1.5"). Returns the prefix length and the id.
///
/// The split is unique (the prefix does not end in a digit), so the prefix
/// followed by the formatted id gives back exactly the member. "user:042",
/// "user:" and "user42" are not prefixed ids.
///
/// On the HAS path of every string member, so it rejects early: by length,
/// by the last byte, by a leading zero, before looking at the prefix.
#[inline]
pub(crate) fn parse_prefixed(bytes: &[u8]) -> Option<(usize, u64)> {
    let len = bytes.len();
    if !(2..=PREFIX_MAX_LEN + NUMBER_MAX_LEN).contains(&len) || !bytes[len - 1].is_ascii_digit() {
        return None;
    }
    let mut start = len - 1;
    while start > 0 && bytes[start - 1].is_ascii_digit() {
        start -= 1;
    }
    if start == 0 || start > PREFIX_MAX_LEN || (bytes[start] == b'0' && start + 1 < len) {
        return None;
    }
    let (prefix, digits) = bytes.split_at(start);
    if !is_prefix(prefix) {
        return None;
    }
    parse_number(digits).map(|id| (start, id))
}

/// Whether `bytes` can be the prefix of a prefixed id (see
/// [`parse_prefixed`]).
#[inline]
pub(crate) fn is_prefix(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(first) if first.is_ascii_alphabetic())
        && matches!(bytes.last(), Some(last) if last.is_ascii_punctuation())
        && bytes.len() <= PREFIX_MAX_LEN
        && bytes.iter().all(u8::is_ascii_graphic)
}

/// Positions of the hyphens in a canonical UUID.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// Lowercase hex digit values; 0xff marks every other byte.
const HEX: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

/// The 128-bit value of a canonical lowercase UUID, `None` for anything else.
#[inline]
pub(crate) fn parse_uuid(bytes: &[u8]) -> Option<u128> {
    let bytes: &[u8; UUID_LEN] = bytes.try_into().ok()?;
    if HYPHENS.iter().any(|&at| bytes[at] != b'-') {
        return None;
    }
    let mut value = 0_u128;
    let mut invalid = 0_u8;
    // The five groups between the hyphens, as fixed ranges the compiler
    // can unroll.
    for group in [
        &bytes[0..8],
        &bytes[9..13],
        &bytes[14..18],
        &bytes[19..23],
        &bytes[24..36],
    ] {
        for &byte in group {
            let digit = HEX[byte as usize];
            invalid |= digit;
            value = (value << 4) | u128::from(digit & 0x0f);
        }
    }
    // Any 0xff lookup sets the high bits, which no hex digit has.
    (invalid & 0xf0 == 0).then_some(value)
}

/// Writes `value` in decimal into the end of `buffer`; returns the digits.
pub(crate) fn format_number(value: u64, buffer: &mut [u8; NUMBER_MAX_LEN]) -> &[u8] {
    let mut start = NUMBER_MAX_LEN;
    let mut rest = value;
    loop {
        start -= 1;
        buffer[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &buffer[start..]
}

/// Writes `value` as a canonical lowercase UUID.
pub(crate) fn format_uuid(value: u128, buffer: &mut [u8; UUID_LEN]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut shift = 128;
    for (at, slot) in buffer.iter_mut().enumerate() {
        if HYPHENS.contains(&at) {
            *slot = b'-';
        } else {
            shift -= 4;
            *slot = DIGITS[((value >> shift) & 0xf) as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_numbers_only() {
        assert_eq!(classify("0"), Kind::Number(0));
        assert_eq!(classify("7"), Kind::Number(7));
        assert_eq!(classify("42"), Kind::Number(42));
        assert_eq!(
            classify("18446744073709551615"),
            Kind::Number(u64::MAX),
            "u64::MAX"
        );
        for text in [
            "007",
            "00",
            "-1",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "1 ",
            "18446744073709551616",
            "99999999999999999999",
            "100000000000000000000",
            "٣",
        ] {
            assert_eq!(classify(text), Kind::Text(text), "{text:?}");
        }
    }

    #[test]
    fn canonical_lowercase_uuids_only() {
        assert_eq!(
            classify("123e4567-e89b-12d3-a456-426614174000"),
            Kind::Uuid(0x123e4567_e89b_12d3_a456_426614174000)
        );
        assert_eq!(
            classify("00000000-0000-0000-0000-000000000000"),
            Kind::Uuid(0)
        );
        assert_eq!(
            classify("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            Kind::Uuid(u128::MAX)
        );
        for text in [
            "123E4567-E89B-12D3-A456-426614174000",
            "123e4567-e89b-12d3-a456-42661417400A",
            "123e4567e89b12d3a456426614174000",
            "{123e4567-e89b-12d3-a456-426614174000}",
            "123e4567-e89b-12d3-a456-42661417400",
            "123e4567-e89b-12d3-a456_426614174000",
            "123e4567-e89b-12d3-a4564-26614174000",
            "g23e4567-e89b-12d3-a456-426614174000",
        ] {
            assert_eq!(classify(text), Kind::Text(text), "{text:?}");
        }
    }

    #[test]
    fn prefixed_ids_only_in_their_canonical_form() {
        assert_eq!(parse_prefixed(b"user:42"), Some((5, 42)));
        assert_eq!(parse_prefixed(b"user:0"), Some((5, 0)));
        assert_eq!(parse_prefixed(b"cust-7"), Some((5, 7)));
        assert_eq!(parse_prefixed(b"v2/acct_9"), Some((8, 9)));
        assert_eq!(parse_prefixed(b"x:1"), Some((2, 1)));
        assert_eq!(
            parse_prefixed(b"abcdefghijklmno:18446744073709551615"),
            Some((16, u64::MAX))
        );
        for text in [
            "user:042",
            "user:00",
            "user:",
            "user42",
            "42",
            "",
            ":",
            "user: 42",
            "us er:42",
            "zoë:42",
            "user:42a",
            "user:18446744073709551616",
            "abcdefghijklmnop:1",
            "user:\u{0}1",
            "-1",
            "+7",
            "1.5",
            "_user:1",
        ] {
            assert_eq!(parse_prefixed(text.as_bytes()), None, "{text:?}");
        }
    }

    proptest! {
        /// A prefixed id formats back to exactly the member.
        #[test]
        fn prefixed_ids_are_exact(text in "[ -~]{0,18}[0-9]{0,22}") {
            if let Some((prefix, id)) = parse_prefixed(text.as_bytes()) {
                prop_assert_eq!(format!("{}{}", &text[..prefix], id), text);
            }
        }

        #[test]
        fn numbers_round_trip(value in any::<u64>()) {
            let mut buffer = [0; NUMBER_MAX_LEN];
            let text = format_number(value, &mut buffer);
            let expected = value.to_string();
            prop_assert_eq!(text, expected.as_bytes());
            prop_assert_eq!(parse_number(text), Some(value));
        }

        #[test]
        fn uuids_round_trip(value in any::<u128>()) {
            let mut buffer = [0; UUID_LEN];
            format_uuid(value, &mut buffer);
            let hex = format!("{value:032x}");
            let expected = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]
            );
            prop_assert_eq!(&buffer[..], expected.as_bytes());
            prop_assert_eq!(parse_uuid(&buffer), Some(value));
        }

        /// Whatever is classified compact formats back to the same string.
        #[test]
        fn compact_forms_are_exact(
            text in "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\
                     |[0-9a-f-]{36}|[0-9]{0,22}|\\PC{0,8}"
        ) {
            match classify(&text) {
                Kind::Number(value) => prop_assert_eq!(value.to_string(), text),
                Kind::Uuid(value) => {
                    let mut buffer = [0; UUID_LEN];
                    format_uuid(value, &mut buffer);
                    prop_assert_eq!(&buffer[..], text.as_bytes());
                }
                Kind::Text(kept) => prop_assert_eq!(kept, text.as_str()),
            }
        }
    }
}
