//! How a loaded set reaches replicas and the AOF: prepared on the worker
//! (a diff against the set the load started from, or the whole set in
//! parts that the worker sends into a shadow before the swap, see
//! `core::shadow`), then settled at the swap against what the key holds by
//! then. Pure: unit-tested without Redis.

use std::sync::Arc;

use crate::core::shadow::encode_parts;
use crate::core::{Campaign, MemberSet};

/// Most members sent to replicas as ADD/REM at the swap; beyond, the
/// whole set goes in parts before it.
pub const DIFF_LIMIT: usize = 10_000;

/// Prepared off the main thread.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Few members changed against the set the load started from.
    Diff {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// Many changed: the whole set, in parts for a shadow.
    Parts(Vec<Vec<u8>>),
    /// Parts were sent as shadow `id`: all of them (`complete`), or some
    /// before the node stopped being a primary.
    Shadow { id: u64, complete: bool },
    /// No AOF, no replica and no replication backlog when the load began:
    /// nothing prepared (checked again at the swap).
    Unheard,
}

/// What the swap sends.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nobody listens.
    Nothing,
    Diff {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// Swap in shadow `id`, every part of which went out.
    Shadow(u64),
    /// The whole set in one command, encoded now: nothing usable was
    /// prepared (a replica attached or the key changed during the load).
    Whole,
}

/// The diff against the set the load started from when it is small, else
/// the whole new set encoded.
pub fn prepare(
    old: Option<&(Arc<MemberSet>, u64)>,
    new: &MemberSet,
    new_checksum: u64,
    parts: Option<Vec<Vec<u8>>>,
    part_bytes: usize,
) -> Prepared {
    let empty = MemberSet::new();
    let (old, old_checksum) = old.map_or((&empty, 0), |(set, checksum)| (&**set, *checksum));
    // Same size and checksum: the sets are equal (up to a 64-bit collision).
    if old.len() == new.len() && old_checksum == new_checksum {
        return Prepared::Diff {
            added: Vec::new(),
            removed: Vec::new(),
        };
    }
    let mut added = Vec::new();
    let mut small = new
        .iter()
        .filter(|member| !old.contains(member))
        .all(|member| {
            added.push(member.to_string());
            added.len() <= DIFF_LIMIT
        });
    // |old| - |removed| = |new| - |added|: a second pass only when needed.
    let mut removed = Vec::new();
    if small && old.len() + added.len() > new.len() {
        small = old
            .iter()
            .filter(|member| !new.contains(member))
            .all(|member| {
                removed.push(member.to_string());
                added.len() + removed.len() <= DIFF_LIMIT
            });
    }
    // An empty set deletes the key: no parts for it.
    if small || new.is_empty() {
        Prepared::Diff { added, removed }
    } else {
        Prepared::Parts(parts.unwrap_or_else(|| encode_parts(new, part_bytes)))
    }
}

/// Settles what to send at the swap. A diff only applies to the set it was
/// computed against: if the key changed under the load (deleted, replaced,
/// written to), the whole set goes instead. A shadow replaces whatever the
/// key holds, so it applies whatever happened meanwhile, once complete.
pub fn plan(prepared: Prepared, base_unchanged: bool, heard: bool) -> Plan {
    match prepared {
        Prepared::Unheard if !heard => Plan::Nothing,
        Prepared::Diff { added, removed } if base_unchanged => Plan::Diff { added, removed },
        Prepared::Shadow { id, complete: true } => Plan::Shadow(id),
        Prepared::Diff { .. }
        | Prepared::Unheard
        | Prepared::Parts(_)
        | Prepared::Shadow { .. } => Plan::Whole,
    }
}

/// Whether the key still holds the set the load started from (`snapshot`;
/// `None`: the key did not exist then).
pub fn base_unchanged(current: Option<&Campaign>, snapshot: Option<&Arc<MemberSet>>) -> bool {
    match (current, snapshot) {
        (Some(campaign), Some(snapshot)) => campaign.is_snapshot(snapshot),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(members: &[&str]) -> (MemberSet, u64) {
        let mut campaign = Campaign::new();
        for member in members {
            campaign.insert(member);
        }
        (campaign.snapshot().as_ref().clone(), campaign.checksum())
    }

    #[test]
    fn a_small_change_is_sent_as_a_diff() {
        let (old, old_sum) = set_of(&["a", "b", "c"]);
        let (new, new_sum) = set_of(&["b", "c", "d"]);
        let prepared = prepare(Some(&(Arc::new(old), old_sum)), &new, new_sum, None, 64);
        assert_eq!(
            prepared,
            Prepared::Diff {
                added: vec!["d".into()],
                removed: vec!["a".into()]
            }
        );
    }

    #[test]
    fn an_equal_set_sends_an_empty_diff() {
        let (old, sum) = set_of(&["a", "b"]);
        let (new, _) = set_of(&["b", "a"]);
        let prepared = prepare(Some(&(Arc::new(old), sum)), &new, sum, None, 64);
        assert_eq!(
            prepared,
            Prepared::Diff {
                added: vec![],
                removed: vec![]
            }
        );
    }

    #[test]
    fn a_large_change_sends_the_whole_set_in_parts() {
        let members: Vec<String> = (0..=DIFF_LIMIT).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        let (new, sum) = set_of(&refs);
        let Prepared::Parts(parts) = prepare(None, &new, sum, None, 4096) else {
            panic!("a large change goes in parts");
        };
        assert!(parts.len() > 10);
        // Sent: swapped in once complete, else the whole set at the swap.
        let sent = |complete| Prepared::Shadow { id: 5, complete };
        assert_eq!(plan(sent(true), false, true), Plan::Shadow(5));
        assert_eq!(plan(sent(false), true, true), Plan::Whole);
        assert_eq!(plan(Prepared::Parts(parts), true, true), Plan::Whole);
    }

    #[test]
    fn a_load_racing_a_del_sends_the_whole_set() {
        let (old, _) = set_of(&["a"]);
        let snapshot = Arc::new(old);
        let diff = || Prepared::Diff {
            added: vec!["b".into()],
            removed: vec![],
        };
        // The key was deleted while the load ran: the diff cannot apply.
        let deleted = base_unchanged(None, Some(&snapshot));
        assert!(!deleted);
        assert_eq!(plan(diff(), deleted, true), Plan::Whole);
        // Created while a load of a missing key ran: likewise.
        let mut created = Campaign::new();
        created.insert("z");
        assert!(!base_unchanged(Some(&created), None));
        // Untouched: the diff goes.
        assert!(base_unchanged(None, None));
        assert_eq!(
            plan(diff(), true, true),
            Plan::Diff {
                added: vec!["b".into()],
                removed: vec![]
            }
        );
    }

    #[test]
    fn nothing_is_sent_when_nobody_listens_before_and_after() {
        assert_eq!(plan(Prepared::Unheard, true, false), Plan::Nothing);
        // A replica attached during the load: the whole set goes.
        assert_eq!(plan(Prepared::Unheard, true, true), Plan::Whole);
    }
}
