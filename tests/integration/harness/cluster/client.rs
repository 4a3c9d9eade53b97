//! A cluster-aware client for the tests, routed by hand so that every
//! redirection and every doubt is visible: each command goes to the node
//! that owns its key's slot; `-MOVED` updates the slot map, `-ASK` retries
//! once on the target after `ASKING`, `-TRYAGAIN` / `-CLUSTERDOWN` /
//! `-LOADING` / `-MASTERDOWN` and connection errors retry after a short
//! sleep. A connection error after the command was sent leaves a doubt (it
//! may have been applied); CAMPAIGN.ADD and CAMPAIGN.REM are idempotent, so
//! the retry settles the member's state, but not the reply's count.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::{Connection, RedisError, Value};

use super::nodes::{parse_nodes, SLOTS};

/// How long one command may take, redirections and retries included.
const COMMAND_DEADLINE: Duration = Duration::from_secs(45);
/// Longer than `campaign.write-block-timeout-ms` of the cluster nodes (a
/// held write answers before it), shorter than a hang.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// What became of one write.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The server replied (and, when a confirmation was asked for, `WAIT`
    /// confirmed it). `doubted`: an earlier attempt of the same command may
    /// also have been applied, so the reply's count means nothing.
    Acknowledged {
        reply: Value,
        port: u16,
        doubted: bool,
    },
    /// Maybe applied, maybe not: the connection failed and no retry was
    /// answered in time, or `WAIT` did not confirm it.
    Ambiguous { why: String, port: u16 },
    /// An error reply other than a redirection: nothing should have
    /// changed, but the tests count it as ambiguous and report it.
    Refused { error: String, port: u16 },
}

/// What the client met on the way.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub moved: u64,
    pub asked: u64,
    /// TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN.
    pub retried: u64,
    pub connection_errors: u64,
    /// Replies that did not come within the read timeout (a hang?).
    pub timeouts: u64,
    pub unconfirmed: u64,
    pub refused: u64,
    /// The first few refusals and timeouts, for the report.
    pub examples: Vec<String>,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.moved += other.moved;
        self.asked += other.asked;
        self.retried += other.retried;
        self.connection_errors += other.connection_errors;
        self.timeouts += other.timeouts;
        self.unconfirmed += other.unconfirmed;
        self.refused += other.refused;
        for example in &other.examples {
            self.example(example.clone());
        }
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 10 {
            self.examples.push(text);
        }
    }
}

pub struct ClusterClient {
    /// Every node's port: where the slot map is asked for.
    seeds: Vec<u16>,
    /// The owner's port of each slot; 0 = unknown.
    slots: Vec<u16>,
    /// The slot of each key written so far, as a node computed it.
    key_slots: HashMap<String, u16>,
    connections: HashMap<u16, Connection>,
    pub stats: Stats,
}

/// One attempt's result.
enum Attempt {
    Reply(Value),
    /// A server error reply: its code and detail.
    Error(String, String),
    /// No reply: the command may or may not have run.
    Lost(RedisError),
}

fn attempt(con: &mut Connection, args: &[&str]) -> Attempt {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    match command.query::<Value>(con) {
        Ok(value) => Attempt::Reply(value),
        Err(error) => classify(error),
    }
}

fn classify(error: RedisError) -> Attempt {
    let server_code = match error.kind() {
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => error.code(),
        _ => None,
    };
    match server_code {
        Some(code) => Attempt::Error(code.to_string(), error.detail().unwrap_or("").to_string()),
        None => Attempt::Lost(error),
    }
}

impl ClusterClient {
    pub fn new(seeds: Vec<u16>) -> Self {
        let mut client = ClusterClient {
            seeds,
            slots: vec![0; SLOTS as usize],
            key_slots: HashMap::new(),
            connections: HashMap::new(),
            stats: Stats::default(),
        };
        client.refresh();
        client
    }

    /// Reloads the slot map from the first node that answers.
    pub fn refresh(&mut self) {
        let seeds = self.seeds.clone();
        for port in seeds {
            let Ok(con) = self.connection(port) else {
                continue;
            };
            let text: Result<String, _> = redis::cmd("CLUSTER").arg("NODES").query(con);
            let Ok(text) = text else {
                self.connections.remove(&port);
                continue;
            };
            let nodes = parse_nodes(&text);
            // A view that misses slots (a node still joining) is skipped.
            let mut slots = vec![0u16; SLOTS as usize];
            for node in nodes.iter().filter(|node| node.is_master()) {
                for &(first, last) in &node.slots {
                    for slot in first..=last {
                        slots[slot as usize] = node.port;
                    }
                }
            }
            if slots.iter().all(|&port| port != 0) {
                self.slots = slots;
                return;
            }
        }
    }

    fn connection(&mut self, port: u16) -> Result<&mut Connection, RedisError> {
        match self.connections.entry(port) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
                let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
                con.set_read_timeout(Some(READ_TIMEOUT))?;
                con.set_write_timeout(Some(Duration::from_secs(5)))?;
                Ok(entry.insert(con))
            }
        }
    }

    /// `key`'s slot, asked once of the first node that answers
    /// (`CLUSTER KEYSLOT`: the server's own hashing, hash tags included).
    fn key_slot(&mut self, key: &str) -> u16 {
        if let Some(&slot) = self.key_slots.get(key) {
            return slot;
        }
        let seeds = self.seeds.clone();
        let deadline = Instant::now() + COMMAND_DEADLINE;
        loop {
            for &port in &seeds {
                let Ok(con) = self.connection(port) else {
                    continue;
                };
                match redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query::<u16>(con)
                {
                    Ok(slot) => {
                        self.key_slots.insert(key.to_owned(), slot);
                        return slot;
                    }
                    Err(_) => {
                        self.connections.remove(&port);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no node computed the slot of {key}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn port_of_slot(&mut self, slot: u16) -> u16 {
        if self.slots[slot as usize] == 0 {
            self.refresh();
        }
        match self.slots[slot as usize] {
            0 => self.seeds[0],
            port => port,
        }
    }

    /// Runs a write on `key`'s owner. With `confirm`, a `WAIT replicas
    /// timeout-ms` follows on the same connection and only a confirmed
    /// write counts as acknowledged.
    pub fn write(&mut self, key: &str, args: &[&str], confirm: Option<(i64, u64)>) -> Outcome {
        let slot = self.key_slot(key);
        let started = Instant::now();
        let mut doubt: Option<String> = None;
        let mut ask: Option<u16> = None;
        let mut redirects = 0u32;
        let mut port = 0u16;
        loop {
            if started.elapsed() > COMMAND_DEADLINE {
                let why = format!(
                    "no answer within {COMMAND_DEADLINE:?} (last doubt: {doubt:?}, {} redirects)",
                    redirects
                );
                self.stats.example(format!("{args:?}: {why}"));
                return Outcome::Ambiguous { why, port };
            }
            let asking = ask.is_some();
            port = match ask.take() {
                Some(target) => target,
                None => self.port_of_slot(slot),
            };
            let con = match self.connection(port) {
                Ok(con) => con,
                Err(_) => {
                    // Nothing was sent.
                    self.stats.connection_errors += 1;
                    self.connections.remove(&port);
                    std::thread::sleep(Duration::from_millis(100));
                    self.refresh();
                    continue;
                }
            };
            if asking {
                if let Attempt::Lost(_) = attempt(con, &["ASKING"]) {
                    self.stats.connection_errors += 1;
                    self.connections.remove(&port);
                    continue;
                }
            }
            match attempt(con, args) {
                Attempt::Reply(reply) => {
                    return self.confirmed(port, reply, confirm, doubt.is_some(), args);
                }
                Attempt::Error(code, detail) => match code.as_str() {
                    "MOVED" => {
                        self.stats.moved += 1;
                        redirects += 1;
                        if let Some(target) = redirect_port(&detail) {
                            self.slots[slot as usize] = target;
                        }
                        if redirects.is_multiple_of(4) {
                            // Nodes that disagree send us back and forth
                            // until gossip settles.
                            std::thread::sleep(Duration::from_millis(25));
                            self.refresh();
                        }
                    }
                    "ASK" => {
                        self.stats.asked += 1;
                        redirects += 1;
                        ask = redirect_port(&detail);
                    }
                    "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" => {
                        self.stats.retried += 1;
                        std::thread::sleep(Duration::from_millis(50));
                        if code == "CLUSTERDOWN" {
                            self.refresh();
                        }
                    }
                    _ => {
                        self.stats.refused += 1;
                        let error = format!("{code} {detail}");
                        self.stats
                            .example(format!("{args:?} on {port}: refused: {error}"));
                        return Outcome::Refused { error, port };
                    }
                },
                Attempt::Lost(error) => {
                    if error.is_timeout() {
                        self.stats.timeouts += 1;
                        self.stats
                            .example(format!("{args:?} on {port}: no reply: {error}"));
                    } else {
                        self.stats.connection_errors += 1;
                    }
                    doubt = Some(format!("{error} on {port}"));
                    self.connections.remove(&port);
                    std::thread::sleep(Duration::from_millis(100));
                    self.refresh();
                }
            }
        }
    }

    fn confirmed(
        &mut self,
        port: u16,
        reply: Value,
        confirm: Option<(i64, u64)>,
        doubted: bool,
        args: &[&str],
    ) -> Outcome {
        let Some((replicas, timeout_ms)) = confirm else {
            return Outcome::Acknowledged {
                reply,
                port,
                doubted,
            };
        };
        let replicas_text = replicas.to_string();
        let timeout_text = timeout_ms.to_string();
        let con = match self.connection(port) {
            Ok(con) => con,
            Err(error) => {
                return Outcome::Ambiguous {
                    why: format!("no connection for WAIT: {error}"),
                    port,
                }
            }
        };
        match attempt(con, &["WAIT", &replicas_text, &timeout_text]) {
            Attempt::Reply(Value::Int(acked)) if acked >= replicas => Outcome::Acknowledged {
                reply,
                port,
                doubted,
            },
            Attempt::Reply(other) => {
                self.stats.unconfirmed += 1;
                Outcome::Ambiguous {
                    why: format!("WAIT answered {other:?}"),
                    port,
                }
            }
            Attempt::Error(code, detail) => {
                self.stats.unconfirmed += 1;
                self.stats
                    .example(format!("WAIT after {args:?} on {port}: {code} {detail}"));
                Outcome::Ambiguous {
                    why: format!("WAIT: {code} {detail}"),
                    port,
                }
            }
            Attempt::Lost(error) => {
                self.stats.unconfirmed += 1;
                self.connections.remove(&port);
                Outcome::Ambiguous {
                    why: format!("WAIT: {error}"),
                    port,
                }
            }
        }
    }

    /// Runs a read on `key`'s owner, following redirections; panics if no
    /// node answers it within the deadline.
    pub fn read(&mut self, key: &str, args: &[&str]) -> Value {
        match self.write(key, args, None) {
            Outcome::Acknowledged { reply, .. } => reply,
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

/// The port of a `-MOVED` / `-ASK` detail: `slot host:port`.
fn redirect_port(detail: &str) -> Option<u16> {
    detail
        .split_whitespace()
        .nth(1)?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}
