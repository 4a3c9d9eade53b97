//! The order-independent checksum of a campaign: the XOR of a 64-bit hash
//! of each member. PostgreSQL computes the same figure over the table with
//! [`SQL_CHECKSUM`], so VERIFY compares cache and database by two numbers.

use md5::{Digest, Md5};

/// The first 8 bytes of the member's MD5, big-endian.
pub fn member_hash(member: &str) -> u64 {
    let digest = Md5::digest(member.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("an MD5 digest has 16 bytes"))
}

/// SQL for one member's hash, as a signed bigint of the same 64 bits.
pub const SQL_MEMBER_HASH: &str = "('x' || left(md5(member), 16))::bit(64)::bigint";

/// `count(*)` and the XOR of every member's hash, for `WHERE campaign = $1`.
pub const SQL_CHECKSUM: &str =
    "count(*), coalesce(bit_xor(('x' || left(md5(member), 16))::bit(64)::bigint), 0)";

/// The checksum as PostgreSQL's bigint shows it.
pub fn as_sql_bigint(checksum: u64) -> i64 {
    checksum as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_md5_prefix() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(member_hash("a"), 0x0cc1_75b9_c0f1_b6a8);
        assert!(SQL_CHECKSUM.contains(SQL_MEMBER_HASH));
    }

    #[test]
    fn xor_is_order_independent_and_self_inverse() {
        let forward = ["a", "b", "c"]
            .iter()
            .fold(0, |acc, m| acc ^ member_hash(m));
        let backward = ["c", "a", "b"]
            .iter()
            .fold(0, |acc, m| acc ^ member_hash(m));
        assert_eq!(forward, backward);
        assert_eq!(forward ^ member_hash("b") ^ member_hash("b"), forward);
    }
}
