//! Rules for the strings we store: campaign members and campaign names both
//! end up in a PostgreSQL `text` column, so they must be UTF-8 without NUL.

use thiserror::Error;

/// Why a string was refused as a member or campaign name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    #[error("is empty")]
    Empty,
    #[error("is {len} bytes long, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("contains a NUL byte")]
    ContainsNul,
}

/// Longest campaign name accepted by a write: names are stored in the
/// database's primary key next to the member.
pub const MAX_CAMPAIGN_NAME_BYTES: usize = 512;

/// Whether `name` could be a campaign in the database (the rules of
/// `validate_text` with the campaign name limit). Anything else is never
/// loaded from it.
pub fn is_storable_campaign_name(name: &[u8]) -> bool {
    validate_text(name, Some(MAX_CAMPAIGN_NAME_BYTES)).is_ok()
}

/// Checks `bytes` against the member rules and returns it as `&str`.
///
/// `max_len` is `None` where the length limit must not apply: commands that
/// come from the primary or from the AOF were already accepted once, and a
/// replica with a smaller limit must not refuse them.
pub fn validate_text(bytes: &[u8], max_len: Option<usize>) -> Result<&str, TextError> {
    if bytes.is_empty() {
        return Err(TextError::Empty);
    }
    if let Some(max) = max_len {
        if bytes.len() > max {
            return Err(TextError::TooLong {
                len: bytes.len(),
                max,
            });
        }
    }
    let text = std::str::from_utf8(bytes).map_err(|_| TextError::NotUtf8)?;
    if bytes.contains(&0) {
        return Err(TextError::ContainsNul);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_multibyte_text() {
        assert_eq!(validate_text(b"user:42", Some(256)), Ok("user:42"));
        assert_eq!(validate_text("zoë-🚀".as_bytes(), Some(256)), Ok("zoë-🚀"));
    }

    #[test]
    fn refuses_each_broken_rule() {
        assert_eq!(validate_text(b"", Some(10)), Err(TextError::Empty));
        assert_eq!(
            validate_text(b"abcdef", Some(5)),
            Err(TextError::TooLong { len: 6, max: 5 })
        );
        assert_eq!(validate_text(b"a\xffb", Some(10)), Err(TextError::NotUtf8));
        assert_eq!(
            validate_text(b"a\0b", Some(10)),
            Err(TextError::ContainsNul)
        );
    }

    #[test]
    fn limit_counts_bytes_not_characters() {
        // "é" is two bytes in UTF-8.
        assert!(validate_text("éé".as_bytes(), Some(4)).is_ok());
        assert_eq!(
            validate_text("ééé".as_bytes(), Some(4)),
            Err(TextError::TooLong { len: 6, max: 4 })
        );
    }

    #[test]
    fn no_limit_still_checks_content() {
        let long = vec![b'x'; 100_000];
        assert!(validate_text(&long, None).is_ok());
        assert_eq!(validate_text(b"\0", None), Err(TextError::ContainsNul));
        assert_eq!(validate_text(b"", None), Err(TextError::Empty));
    }
}
