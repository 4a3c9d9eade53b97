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
