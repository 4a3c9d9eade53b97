//! Which campaign keys are being loaded and who waits on each: REBUILD
//! callers, HAS/MHAS readers (read-through), and writes held until the
//! swap. Generic over the client handle so its rules are unit-tested
//! without Redis; `Loads` keeps one with Redis's blocked clients.

use std::collections::{HashMap, VecDeque};

use crate::core::Op;
use crate::keyspace::KeyId;

/// Who waits on a load.
pub enum Waiter<C> {
    /// CAMPAIGN.REBUILD: replied the member count.
    Rebuild(C),
    /// HAS / MHAS on a missing campaign: replied their answers.
    Reader(Reader<C>),
    /// Prefill and the reconciler: nobody waits.
    Background,
}

pub struct Reader<C> {
    pub client: C,
    pub members: Vec<String>,
    pub multi: bool,
    /// Past this (unix ms) the reader gets the cache's answer while the
    /// load goes on (`campaign.read-through-timeout-ms`).
    pub deadline_ms: u64,
}

/// An ADD or REM that arrived while its campaign was loading, parsed.
pub struct HeldWrite<C> {
    pub op: Op,
    pub campaign: String,
    pub members: Vec<String>,
    pub client: C,
    pub deadline_ms: u64,
    /// The write arrived for a missing campaign: past its deadline it is
    /// applied to an incomplete campaign instead of failing.
    pub on_missing: bool,
}

pub struct PendingLoad<C> {
    pub rebuild_callers: Vec<C>,
    pub readers: Vec<Reader<C>>,
    /// In arrival order.
    pub held: VecDeque<HeldWrite<C>>,
    /// A value arrived under the key while it loaded (RENAME, COPY, MOVE,
    /// RESTORE, SWAPDB onto it): the load's set, read before, must not
    /// replace it.
    pub overtaken: bool,
}

impl<C> Default for PendingLoad<C> {
    fn default() -> Self {
        PendingLoad {
            rebuild_callers: Vec::new(),
            readers: Vec::new(),
            held: VecDeque::new(),
            overtaken: false,
        }
    }
}

pub struct Registry<C> {
    inflight: HashMap<KeyId, PendingLoad<C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Registry {
            inflight: HashMap::new(),
        }
    }
}

impl<C> Registry<C> {
    /// Adds `waiter` to the load of `key`; true when no load of it was
    /// running, so the caller must start one.
    pub fn join(&mut self, key: KeyId, waiter: Waiter<C>) -> bool {
        let starting = !self.inflight.contains_key(&key);
        let load = self.inflight.entry(key).or_default();
        match waiter {
            Waiter::Rebuild(client) => load.rebuild_callers.push(client),
            Waiter::Reader(reader) => load.readers.push(reader),
            Waiter::Background => {}
        }
        starting
    }

    /// Holds `write` until the load of `key` finishes; gives it back when
    /// no load of `key` is running.
    pub fn hold(&mut self, key: &KeyId, write: HeldWrite<C>) -> Result<(), HeldWrite<C>> {
        match self.inflight.get_mut(key) {
            Some(load) => {
                load.held.push_back(write);
                Ok(())
            }
            None => Err(write),
        }
    }

    /// Marks the load of `key`, if one runs, as overtaken by a value that
    /// arrived under its name.
    pub fn overtake(&mut self, key: &KeyId) {
        if let Some(load) = self.inflight.get_mut(key) {
            load.overtaken = true;
        }
    }

    pub fn is_overtaken(&self, key: &KeyId) -> bool {
        self.inflight.get(key).is_some_and(|load| load.overtaken)
    }

    /// The keys being loaded.
    pub fn keys(&self) -> Vec<KeyId> {
        self.inflight.keys().cloned().collect()
    }

    pub fn is_loading(&self, key: &KeyId) -> bool {
        self.inflight.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Takes out the readers whose deadline has passed at `now_ms`.
    pub fn expire_readers(&mut self, now_ms: u64) -> Vec<(KeyId, Reader<C>)> {
        let mut expired = Vec::new();
        for (key, load) in self.inflight.iter_mut() {
            let (gone, kept): (Vec<Reader<C>>, Vec<Reader<C>>) = std::mem::take(&mut load.readers)
                .into_iter()
                .partition(|reader| now_ms >= reader.deadline_ms);
            load.readers = kept;
            expired.extend(gone.into_iter().map(|reader| (key.clone(), reader)));
        }
        expired
    }

    /// Takes out the held writes whose deadline has passed at `now_ms`.
    pub fn expire_held(&mut self, now_ms: u64) -> Vec<(KeyId, HeldWrite<C>)> {
        let mut expired = Vec::new();
        for (key, load) in self.inflight.iter_mut() {
            // Deadlines need not grow with arrival: CONFIG SET may shorten
            // the timeout meanwhile.
            let (gone, kept): (Vec<HeldWrite<C>>, Vec<HeldWrite<C>>) =
                std::mem::take(&mut load.held)
                    .into_iter()
                    .partition(|held| now_ms >= held.deadline_ms);
            load.held = kept.into();
            expired.extend(gone.into_iter().map(|held| (key.clone(), held)));
        }
        expired
    }

    /// Ends the load of `key`: everyone who waited on it.
    pub fn finish(&mut self, key: &KeyId) -> PendingLoad<C> {
        self.inflight.remove(key).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> KeyId {
        KeyId {
            db: 0,
            name: name.as_bytes().to_vec(),
        }
    }

    fn write(client: u32, op: Op, member: &str, deadline_ms: u64) -> HeldWrite<u32> {
        HeldWrite {
            op,
            campaign: "c".into(),
            members: vec![member.into()],
            client,
            deadline_ms,
            on_missing: false,
        }
    }

    #[test]
    fn only_a_running_load_is_overtaken_and_a_new_one_starts_clean() {
        let mut registry: Registry<u32> = Registry::default();
        registry.overtake(&key("c"));
        assert!(!registry.is_overtaken(&key("c")));
        registry.join(key("c"), Waiter::Background);
        registry.join(key("d"), Waiter::Background);
        registry.overtake(&key("c"));
        assert!(registry.is_overtaken(&key("c")));
        assert!(!registry.is_overtaken(&key("d")));
        assert!(registry.finish(&key("c")).overtaken);
        registry.join(key("c"), Waiter::Background);
        assert!(!registry.is_overtaken(&key("c")));
    }

    #[test]
    fn one_load_per_key_shared_by_every_waiter() {
        let mut registry = Registry::default();
        assert!(registry.join(key("c"), Waiter::Rebuild(1)));
        assert!(!registry.join(key("c"), Waiter::Rebuild(2)));
        let reader = Reader {
            client: 3,
            members: vec!["m".into()],
            multi: false,
            deadline_ms: 0,
        };
        assert!(!registry.join(key("c"), Waiter::Reader(reader)));
        assert!(registry.join(key("d"), Waiter::Background));
        assert_eq!(registry.len(), 2);
        let finished = registry.finish(&key("c"));
        assert_eq!(finished.rebuild_callers, [1, 2]);
        assert_eq!(finished.readers.len(), 1);
        assert!(!registry.is_loading(&key("c")) && registry.is_loading(&key("d")));
        assert!(registry.join(key("c"), Waiter::Background), "a new load");
    }

    #[test]
    fn held_writes_come_back_in_arrival_order() {
        let mut registry = Registry::default();
        registry.join(key("c"), Waiter::Background);
        for (client, op, member) in [(1, Op::Add, "x"), (2, Op::Remove, "x"), (3, Op::Add, "y")] {
            assert!(registry
                .hold(&key("c"), write(client, op, member, 100))
                .is_ok());
        }
        let held: Vec<(u32, Op)> = registry
            .finish(&key("c"))
            .held
            .into_iter()
            .map(|write| (write.client, write.op))
            .collect();
        assert_eq!(held, [(1, Op::Add), (2, Op::Remove), (3, Op::Add)]);
    }

    #[test]
    fn a_write_to_a_campaign_not_loading_is_not_held() {
        let mut registry: Registry<u32> = Registry::default();
        let refused = registry.hold(&key("c"), write(7, Op::Add, "x", 100));
        assert_eq!(refused.map_err(|write| write.client), Err(7));
    }

    #[test]
    fn held_writes_past_their_deadline_expire_alone() {
        let mut registry = Registry::default();
        registry.join(key("c"), Waiter::Background);
        for (client, deadline) in [(1, 100), (2, 300), (3, 200)] {
            let _ = registry.hold(&key("c"), write(client, Op::Add, "m", deadline));
        }
        let clients = |expired: Vec<(KeyId, HeldWrite<u32>)>| -> Vec<u32> {
            expired.into_iter().map(|(_, held)| held.client).collect()
        };
        assert_eq!(clients(registry.expire_held(99)), Vec::<u32>::new());
        assert_eq!(clients(registry.expire_held(200)), [1, 3]);
        let left: Vec<u32> = registry
            .finish(&key("c"))
            .held
            .into_iter()
            .map(|write| write.client)
            .collect();
        assert_eq!(left, [2]);
    }
}
