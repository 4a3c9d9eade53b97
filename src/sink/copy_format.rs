//! PostgreSQL's COPY text format: the rows a flush sends, and the rows a
//! load receives, turned into a member set (and its checksum and shadow
//! parts) on a thread of its own.

use std::fmt::Write as _;

use super::{LoadedMembers, PartsOut};
use crate::core::checksum::member_hash;
use crate::core::member_set::MemberSetBuilder;
use crate::core::shadow::PartsWriter;
use crate::core::validate_text;

/// Builds the set, its checksum (a lookup3 hash, cheap next to the insert)
/// and the parts, when asked, from chunks of COPY output.
pub fn build_members(
    chunks: crossbeam_channel::Receiver<Vec<u8>>,
    parts_out: PartsOut,
) -> LoadedMembers {
    let mut loaded = LoadedMembers::default();
    let mut members = MemberSetBuilder::default();
    let mut parts = parts_out.writer();
    for chunk in chunks {
        for_each_field(&chunk, |field| match validate_text(field, None) {
            Ok(member) => {
                members.insert(member);
                loaded.checksum ^= member_hash(member);
                if let Some(part) = parts.as_mut().and_then(|parts| parts.push(member)) {
                    parts_out.deliver(part, &mut loaded.parts);
                }
            }
            Err(_) => loaded.skipped += 1,
        });
    }
    if let Some(part) = parts.and_then(PartsWriter::finish) {
        parts_out.deliver(part, &mut loaded.parts);
    }
    loaded.members = members.finish();
    loaded
}

/// Calls `visit` with each (unescaped) single-column row of a COPY chunk.
pub fn for_each_field(chunk: &[u8], mut visit: impl FnMut(&[u8])) {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let mut scratch = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        visit(unescape_copy_field(line, &mut scratch));
    }
}

/// One field of COPY's text output, with its backslash escapes undone.
fn unescape_copy_field<'a>(field: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if !field.contains(&b'\\') {
        return field;
    }
    scratch.clear();
    let mut bytes = field.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            scratch.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'n') => scratch.push(b'\n'),
            Some(b'r') => scratch.push(b'\r'),
            Some(b't') => scratch.push(b'\t'),
            Some(b'b') => scratch.push(0x08),
            Some(b'f') => scratch.push(0x0c),
            Some(b'v') => scratch.push(0x0b),
            Some(other) => scratch.push(other),
            None => scratch.push(b'\\'),
        }
    }
    scratch
}

/// Rows (campaign, member, version) in COPY's text format. Members hold
/// no NUL (validated on entry); backslash, tab, newline and carriage
/// return are escaped.
pub fn copy_text<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, i64)>) -> String {
    let mut out = String::new();
    for (campaign, member, version) in rows {
        push_copy_field(&mut out, campaign);
        out.push('\t');
        push_copy_field(&mut out, member);
        out.push('\t');
        let _ = write!(out, "{version}");
        out.push('\n');
    }
    out
}

fn push_copy_field(out: &mut String, field: &str) {
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_unescape() {
        let mut scratch = Vec::new();
        assert_eq!(unescape_copy_field(b"plain", &mut scratch), b"plain");
        assert_eq!(
            unescape_copy_field(b"a\\tb\\nc\\\\d\\re", &mut scratch),
            b"a\tb\nc\\d\re"
        );
        // What copy_text writes, read back, is the original.
        let original = "x\\y\tz\n";
        let written = copy_text([("c", original, 7)]);
        let field = written.trim_end_matches('\n').split('\t').nth(1).unwrap();
        assert_eq!(
            unescape_copy_field(field.as_bytes(), &mut scratch),
            original.as_bytes()
        );
    }

    #[test]
    fn copy_text_escapes_the_special_characters() {
        let rows = [("c\\1", "tab\there", 1), ("c", "line\nbreak\rx", 20)];
        assert_eq!(
            copy_text(rows),
            "c\\\\1\ttab\\there\t1\nc\tline\\nbreak\\rx\t20\n"
        );
    }
}
