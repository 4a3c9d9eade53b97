//! The persistence format of a member set, written against two small traits
//! so the encoding is tested here and the Redis RDB stream is only an adapter
//! (see `redis_glue::data_type`).

use thiserror::Error;

use super::member::TextError;

/// Where encoded records go (an RDB stream, or a buffer in tests).
pub trait RecordWriter {
    fn write_unsigned(&mut self, value: u64);
    fn write_bytes(&mut self, bytes: &[u8]);
}

/// Where encoded records come from.
pub trait RecordReader {
    fn read_unsigned(&mut self) -> Result<u64, DecodeError>;
    /// Hands the next byte string to `use_bytes` without keeping a copy.
    fn read_bytes<T>(&mut self, use_bytes: impl FnOnce(&[u8]) -> T) -> Result<T, DecodeError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("unexpected end of data")]
    Truncated,
    #[error("unknown encoding version {0}")]
    UnknownVersion(i32),
    #[error("stored member {0}")]
    InvalidMember(TextError),
    #[error("corrupt data: {0}")]
    Corrupt(&'static str),
}

/// An in-memory record stream, for tests of the encoding.
#[cfg(test)]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordBuffer {
    records: Vec<Record>,
    cursor: usize,
}

#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Unsigned(u64),
    Bytes(Vec<u8>),
}

#[cfg(test)]
impl RecordWriter for RecordBuffer {
    fn write_unsigned(&mut self, value: u64) {
        self.records.push(Record::Unsigned(value));
    }
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.records.push(Record::Bytes(bytes.to_vec()));
    }
}

#[cfg(test)]
impl RecordReader for RecordBuffer {
    fn read_unsigned(&mut self) -> Result<u64, DecodeError> {
        match self.records.get(self.cursor) {
            Some(Record::Unsigned(value)) => {
                self.cursor += 1;
                Ok(*value)
            }
            _ => Err(DecodeError::Truncated),
        }
    }
    fn read_bytes<T>(&mut self, use_bytes: impl FnOnce(&[u8]) -> T) -> Result<T, DecodeError> {
        match self.records.get(self.cursor) {
            Some(Record::Bytes(bytes)) => {
                self.cursor += 1;
                Ok(use_bytes(bytes))
            }
            _ => Err(DecodeError::Truncated),
        }
    }
}

#[cfg(test)]
impl RecordBuffer {
    /// Drops the last `count` records, to simulate a cut-off stream.
    pub fn truncate_by(&mut self, count: usize) {
        let keep = self.records.len().saturating_sub(count);
        self.records.truncate(keep);
    }

    /// Appends a raw byte record, to simulate corrupt input.
    pub fn push_raw_bytes(&mut self, bytes: &[u8]) {
        self.write_bytes(bytes);
    }
}

/// A record stream in one byte buffer: how a rebuilt set travels to
/// replicas and the AOF as a single command argument. Unsigned values are
/// 8 bytes little-endian; byte strings a 4-byte length, then the bytes.
#[derive(Debug, Default)]
pub struct BlobWriter {
    pub bytes: Vec<u8>,
}

impl RecordWriter for BlobWriter {
    fn write_unsigned(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.bytes
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(bytes);
    }
}

pub struct BlobReader<'a> {
    bytes: &'a [u8],
}

impl<'a> BlobReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BlobReader { bytes }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < count {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }
}

impl RecordReader for BlobReader<'_> {
    fn read_unsigned(&mut self) -> Result<u64, DecodeError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
    }
    fn read_bytes<T>(&mut self, use_bytes: impl FnOnce(&[u8]) -> T) -> Result<T, DecodeError> {
        let length = self.take(4)?;
        let length = u32::from_le_bytes(length.try_into().expect("four bytes")) as usize;
        Ok(use_bytes(self.take(length)?))
    }
}

#[cfg(test)]
mod blob_tests {
    use super::*;

    #[test]
    fn blob_round_trip_and_truncation() {
        let mut writer = BlobWriter::default();
        writer.write_unsigned(7);
        writer.write_bytes(b"zo\xc3\xab");
        let mut reader = BlobReader::new(&writer.bytes);
        assert_eq!(reader.read_unsigned(), Ok(7));
        assert_eq!(
            reader.read_bytes(|b| b.to_vec()),
            Ok(b"zo\xc3\xab".to_vec())
        );
        assert_eq!(reader.read_unsigned(), Err(DecodeError::Truncated));
        let mut short = BlobReader::new(&writer.bytes[..10]);
        short.read_unsigned().unwrap();
        assert_eq!(short.read_bytes(|b| b.len()), Err(DecodeError::Truncated));
    }
}
