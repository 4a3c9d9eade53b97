//! One member as a member set yields it: borrowed text, or formatted on the
//! stack from a compact form (an id, a UUID, a prefix and an id).

use std::fmt;

use super::canonical::{
    format_number, format_uuid, Kind, NUMBER_MAX_LEN, PREFIX_MAX_LEN, UUID_LEN,
};

/// The longest formatted member: a UUID, or a prefix and an id.
const FORMATTED_MAX_LEN: usize = UUID_LEN;
const _: () = assert!(PREFIX_MAX_LEN + NUMBER_MAX_LEN <= FORMATTED_MAX_LEN);

/// One member, as [`super::member_set::MemberSet::iter`] yields it:
/// borrowed from the set, or formatted on the stack for ids, UUIDs and
/// prefixed ids (no allocation either way). Use it as a `&str` (`Deref`,
/// `as_str`, `Display`).
#[derive(Clone, Copy)]
pub struct MemberRef<'a>(Repr<'a>);

#[derive(Clone, Copy)]
enum Repr<'a> {
    Text(&'a str),
    Formatted {
        bytes: [u8; FORMATTED_MAX_LEN],
        len: u8,
    },
}

impl MemberRef<'_> {
    pub(crate) fn number(id: u64) -> Self {
        Self::prefixed(b"", id)
    }

    /// `prefix` (at most `PREFIX_MAX_LEN` ASCII bytes) followed by `id`.
    pub(crate) fn prefixed(prefix: &[u8], id: u64) -> Self {
        let mut digits = [0; NUMBER_MAX_LEN];
        let text = format_number(id, &mut digits);
        let mut bytes = [0; FORMATTED_MAX_LEN];
        let prefix = &prefix[..prefix.len().min(PREFIX_MAX_LEN)];
        bytes[..prefix.len()].copy_from_slice(prefix);
        bytes[prefix.len()..prefix.len() + text.len()].copy_from_slice(text);
        MemberRef(Repr::Formatted {
            bytes,
            len: (prefix.len() + text.len()) as u8,
        })
    }

    pub(crate) fn uuid(value: u128) -> Self {
        let mut bytes = [0; FORMATTED_MAX_LEN];
        let uuid: &mut [u8; UUID_LEN] = (&mut bytes[..UUID_LEN])
            .try_into()
            .expect("the buffer holds a UUID");
        format_uuid(value, uuid);
        MemberRef(Repr::Formatted {
            bytes,
            len: UUID_LEN as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Text(text) => text,
            // Formatted members are ASCII (prefixes are checked ASCII).
            Repr::Formatted { bytes, len } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
        }
    }
}

impl<'a> MemberRef<'a> {
    /// A member given as text (kept as it is).
    pub fn text(text: &'a str) -> Self {
        MemberRef(Repr::Text(text))
    }

    /// The member a classified value stands for.
    pub(crate) fn from_kind(kind: Kind<'a>) -> Self {
        match kind {
            Kind::Number(id) => MemberRef::number(id),
            Kind::Uuid(uuid) => MemberRef::uuid(uuid),
            Kind::Text(text) => MemberRef::text(text),
        }
    }
}

impl std::ops::Deref for MemberRef<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MemberRef<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for MemberRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MemberRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for MemberRef<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MemberRef<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
