//! Redis Cluster key slots, for prefill to load only this node's campaigns.

/// Hash slots of a Redis Cluster.
pub const SLOTS: usize = 16_384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, honouring a `{hash tag}` as Redis does.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS as u16
}

/// The slots the `myself` line of `CLUSTER NODES` serves.
pub fn my_slots(cluster_nodes: &str) -> Vec<bool> {
    let mut owned = vec![false; SLOTS];
    let Some(myself) = cluster_nodes.lines().find(|line| {
        line.split(' ')
            .nth(2)
            .is_some_and(|flags| flags.split(',').any(|flag| flag == "myself"))
    }) else {
        return owned;
    };
    // Fields 9 and on: "5", "0-8191", or "[slot->-node]" (migrating: skip).
    for range in myself
        .split(' ')
        .skip(8)
        .filter(|field| !field.starts_with('['))
    {
        let bounds: Vec<Option<usize>> = range.split('-').map(|n| n.parse().ok()).collect();
        let (first, last) = match bounds[..] {
            [Some(slot)] => (slot, slot),
            [Some(first), Some(last)] => (first, last),
            _ => continue,
        };
        let last = last.min(SLOTS - 1);
        if first <= last {
            owned[first..=last].fill(true);
        }
    }
    owned
}

/// The slots of `owned` not yet in `done`, marking them done; `None` when
/// no slot is new.
pub fn newly_owned(owned: &[bool], done: &mut [bool]) -> Option<Vec<bool>> {
    let mut gained = vec![false; owned.len()];
    let mut any = false;
    for ((gain, &owns), seen) in gained.iter_mut().zip(owned).zip(done.iter_mut()) {
        if owns && !*seen {
            (*gain, *seen, any) = (true, true, true);
        }
    }
    any.then_some(gained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{}x"),
            crc16(b"{}x") % 16_384,
            "an empty tag hashes the whole key"
        );
    }

    #[test]
    fn parses_the_myself_line() {
        let nodes = "a1 127.0.0.1:7001@17001 master - 0 0 1 connected 0-99 200\n\
                     b2 127.0.0.1:7000@17000 myself,master - 0 0 2 connected 100-199 300 [301->-a1]\n";
        let owned = my_slots(nodes);
        assert!(owned[100] && owned[199] && owned[300]);
        assert!(!owned[99] && !owned[200] && !owned[301]);
        assert_eq!(owned.iter().filter(|&&o| o).count(), 101);
        let odd = my_slots("c3 x:1@2 myself,master - 0 0 1 connected 20000-30000 9-x\n");
        assert!(
            odd.iter().all(|&o| !o),
            "out-of-range and malformed ranges are ignored"
        );
    }

    #[test]
    fn slots_are_new_once() {
        let mut done = vec![false; 4];
        assert_eq!(newly_owned(&[false; 4], &mut done), None);
        let gained = newly_owned(&[true, true, false, false], &mut done);
        assert_eq!(gained, Some(vec![true, true, false, false]));
        assert_eq!(newly_owned(&[true, true, false, false], &mut done), None);
        let later = newly_owned(&[false, true, true, false], &mut done);
        assert_eq!(
            later,
            Some(vec![false, false, true, false]),
            "slot 1 was done"
        );
    }
}
