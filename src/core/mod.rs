//! The pure core: everything here is plain Rust with no `redis_module` import,
//! so it is unit- and property-tested without a Redis server.

pub mod campaign;
mod canonical;
pub mod checksum;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod journal;
mod journal_chunk;
mod leb128;
pub mod member;
mod member_codec;
mod member_ref;
pub mod member_set;
mod number_set;
mod prefixed_set;
mod probe_table;
pub mod relocate;
pub mod shadow;
mod sorted_set;
mod string_set;
mod uuid_set;
pub mod version;

pub use campaign::Campaign;
pub use codec::{BlobReader, BlobWriter, DecodeError, RecordReader, RecordWriter};
pub use journal::{collapse, Batch, Change, Collapsed, Entry, EntryRef, Journal, Op, PRUNE_MEMBER};
pub use member::{is_storable_campaign_name, validate_text, TextError, MAX_CAMPAIGN_NAME_BYTES};
pub use member_set::MemberSet;
