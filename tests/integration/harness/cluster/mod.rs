//! A Redis Cluster of module-loaded nodes on free ports: N primaries with R
//! replicas each, slot moves (by hand with `CLUSTER SETSLOT` + `MIGRATE`, and
//! with `redis-cli --cluster reshard`), failovers, kill -9. Every wait has a
//! deadline and panics with the nodes' logs. Dropping it stops every node.

pub mod client;
pub mod model;
pub mod nodes;

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use self::nodes::{parse_nodes, NodeLine, SLOTS};
use super::campaign::info_field;
use super::redis_server::{call, cli_binary};
use super::{wait_until, RedisOptions, RedisServer};

/// Small, so that a kill -9 is noticed and failed over within seconds.
const NODE_TIMEOUT_MS: u64 = 2_000;
/// The longest any cluster-wide wait may take.
const WAIT: Duration = Duration::from_secs(60);
/// The longest a redis-cli run (create, reshard) may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

struct Node {
    server: RedisServer,
    id: String,
    /// Killed on purpose: left out of every wait and check.
    down: bool,
}

pub struct Cluster {
    options: RedisOptions,
    nodes: Vec<Node>,
}

fn cluster_options(options: &RedisOptions) -> RedisOptions {
    options
        .clone()
        .config("cluster-enabled yes")
        .config(&format!("cluster-node-timeout {NODE_TIMEOUT_MS}"))
}

fn text(con: &mut Connection, args: &[&str]) -> Result<String, String> {
    let bytes: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
    match call(con, &bytes)? {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(text) => Ok(text),
        Value::Okay => Ok("OK".into()),
        Value::VerbatimString { text, .. } => Ok(text),
        other => Ok(format!("{other:?}")),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::Int(number) => number.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

impl Cluster {
    /// `primaries` primaries with `replicas` replicas each, every node
    /// started with `options` plus cluster mode. Three or more primaries
    /// are joined by `redis-cli --cluster create` (which refuses fewer);
    /// fewer by hand (ADDSLOTSRANGE, MEET, REPLICATE).
    pub fn start(primaries: usize, replicas: usize, options: RedisOptions) -> Self {
        assert!(primaries >= 1);
        let count = primaries * (1 + replicas);
        let nodes = (0..count)
            .map(|_| {
                let server = RedisServer::start_with(cluster_options(&options));
                let mut con = server.connection();
                let id = text(&mut con, &["CLUSTER", "MYID"]).unwrap();
                Node {
                    server,
                    id,
                    down: false,
                }
            })
            .collect();
        let cluster = Cluster { options, nodes };
        if primaries >= 3 {
            cluster.create_with_cli(replicas);
        } else {
            cluster.create_by_hand(primaries, replicas);
        }
        cluster.wait_stable("the cluster to form");
        cluster
    }

    fn create_with_cli(&self, replicas: usize) {
        let mut command = Command::new(cli_binary());
        command.args(["--cluster", "create"]);
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.server.port));
        }
        command.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        self.run_cli(command, "redis-cli --cluster create");
    }

    fn create_by_hand(&self, primaries: usize, replicas: usize) {
        let per = SLOTS as usize / primaries;
        for p in 0..primaries {
            let first = p * per;
            let last = if p + 1 == primaries {
                SLOTS as usize - 1
            } else {
                first + per - 1
            };
            let mut con = self.connection(p);
            let epoch = (p + 1).to_string();
            text(&mut con, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch]).unwrap();
            text(
                &mut con,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            )
            .unwrap();
        }
        let first_port = self.nodes[0].server.port.to_string();
        for i in 1..self.nodes.len() {
            let mut con = self.connection(i);
            text(&mut con, &["CLUSTER", "MEET", "127.0.0.1", &first_port]).unwrap();
        }
        for r in 0..primaries * replicas {
            let replica = primaries + r;
            let primary = r / replicas;
            self.replicate(replica, primary);
        }
    }

    /// Makes node `replica` a replica of node `primary` once it knows it.
    fn replicate(&self, replica: usize, primary: usize) {
        let mut con = self.connection(replica);
        let primary_id = self.nodes[primary].id.clone();
        let done = wait_until(WAIT, || {
            text(&mut con, &["CLUSTER", "REPLICATE", &primary_id]).is_ok()
        });
        self.check(done, &format!("node {replica} to replicate node {primary}"));
    }

    /// Runs a redis-cli command, at most `CLI_TIMEOUT`; panics with its
    /// output and the logs if it fails, reports an error or hangs.
    fn run_cli(&self, mut command: Command, what: &str) -> String {
        let mut output = tempfile::tempfile().expect("temporary file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("file handle"))
            .stderr(output.try_clone().expect("file handle"))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", cli_binary()));
        let mut status = None;
        let finished = wait_until(CLI_TIMEOUT, || {
            status = child.try_wait().expect("redis-cli status");
            status.is_some()
        });
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut text = String::new();
        output.seek(SeekFrom::Start(0)).expect("rewind");
        output.read_to_string(&mut text).expect("redis-cli output");
        let succeeded = status.is_some_and(|status| status.success());
        if !succeeded || text.contains("[ERR]") {
            panic!(
                "{what} failed ({}):\n{text}\n{}",
                status.map_or_else(
                    || format!("killed after {CLI_TIMEOUT:?}"),
                    |s| s.to_string()
                ),
                self.logs()
            );
        }
        text
    }

    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].server.port
    }

    pub fn id(&self, node: usize) -> &str {
        &self.nodes[node].id
    }

    /// Every node's port (also of nodes killed): seeds for a client.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.server.port).collect()
    }

    pub fn connection(&self, node: usize) -> Connection {
        let server = &self.nodes[node].server;
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|error| {
                panic!(
                    "cannot connect to node {node} (port {}): {error}\n{}",
                    server.port,
                    self.logs()
                )
            });
        con.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        con
    }

    fn index_of_id(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| !self.nodes[i].down)
    }

    /// Node `node`'s `CLUSTER NODES`, or `None` if it does not answer.
    fn view(&self, node: usize) -> Option<Vec<NodeLine>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port(node))).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        text(&mut con, &["CLUSTER", "NODES"])
            .ok()
            .map(|text| parse_nodes(&text))
    }

    fn role(&self, node: usize) -> Option<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port(node))).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut con).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("role:"))
            .map(|role| role.trim().to_string())
    }

    /// Why the cluster is not settled yet, or `None` when every live node
    /// says `cluster_state:ok`, knows every live node, agrees on roles and
    /// slots, has no open slot move, every slot is served by a live
    /// primary, and every live replica's link is up.
    fn unsettled(&self) -> Option<String> {
        let live_ids: Vec<&str> = self.live().map(|i| self.nodes[i].id.as_str()).collect();
        let mut agreed: Option<Vec<String>> = None;
        for i in self.live() {
            let mut con = self.connection(i);
            let info = text(&mut con, &["CLUSTER", "INFO"]).unwrap_or_default();
            if !info.contains("cluster_state:ok") {
                return Some(format!("node {i}: cluster_state not ok"));
            }
            let Some(view) = self.view(i) else {
                return Some(format!("node {i}: no CLUSTER NODES"));
            };
            let mut shape = Vec::new();
            for id in &live_ids {
                let Some(line) = view.iter().find(|line| line.id == *id) else {
                    return Some(format!("node {i} does not know {id}"));
                };
                for flag in ["handshake", "noaddr", "fail", "fail?"] {
                    if line.has_flag(flag) {
                        return Some(format!("node {i} sees {id} as {flag}"));
                    }
                }
                if line.open_slots {
                    return Some(format!("node {i} sees an open slot move on {id}"));
                }
                shape.push(line.shape());
            }
            let covered: usize = view
                .iter()
                .filter(|line| line.is_master() && live_ids.contains(&line.id.as_str()))
                .flat_map(|line| line.slots.iter())
                .map(|&(first, last)| (last - first) as usize + 1)
                .sum();
            if covered != SLOTS as usize {
                return Some(format!("node {i}: live primaries serve {covered} slots"));
            }
            match &agreed {
                None => agreed = Some(shape),
                Some(first) if *first != shape => {
                    return Some(format!("node {i} disagrees:\n{first:#?}\n{shape:#?}"))
                }
                Some(_) => {}
            }
            if self.role(i).as_deref() == Some("slave")
                && info_field(&mut con, "replication", "master_link_status") != "up"
            {
                return Some(format!("node {i}: replica link down"));
            }
        }
        None
    }

    /// Waits until the cluster is settled (see `unsettled`).
    pub fn wait_stable(&self, what: &str) {
        let mut why = None;
        let settled = wait_until(WAIT, || {
            why = self.unsettled();
            why.is_none()
        });
        if !settled {
            panic!(
                "waiting for {what}: not settled within {WAIT:?}: {}\n{}",
                why.unwrap_or_default(),
                self.logs()
            );
        }
    }

    fn check(&self, ok: bool, what: &str) {
        if !ok {
            panic!("waiting for {what}: not within {WAIT:?}\n{}", self.logs());
        }
    }

    /// Indices of the live nodes that are primaries now.
    pub fn primaries(&self) -> Vec<usize> {
        self.live()
            .filter(|&i| self.role(i).as_deref() == Some("master"))
            .collect()
    }

    /// The live replicas of node `primary`, as it sees them.
    pub fn replicas_of(&self, primary: usize) -> Vec<usize> {
        let id = self.id(primary).to_string();
        let view = self
            .view(primary)
            .unwrap_or_else(|| panic!("node {primary} does not answer\n{}", self.logs()));
        view.iter()
            .filter(|line| line.master.as_deref() == Some(&id))
            .map(|line| self.index_of_id(&line.id))
            .filter(|&i| !self.nodes[i].down)
            .collect()
    }

    /// The node serving `slot`, as the first live node sees it.
    pub fn owner_of_slot(&self, slot: u16) -> usize {
        for i in self.live() {
            if let Some(view) = self.view(i) {
                if let Some(line) = view.iter().find(|line| {
                    line.is_master()
                        && line
                            .slots
                            .iter()
                            .any(|&(first, last)| first <= slot && slot <= last)
                }) {
                    return self.index_of_id(&line.id);
                }
            }
        }
        panic!("nobody serves slot {slot}\n{}", self.logs())
    }

    /// `CLUSTER KEYSLOT key`, asked of the server.
    pub fn slot_of(&self, key: &str) -> u16 {
        let node = self.live().next().expect("a live node");
        let mut con = self.connection(node);
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .unwrap()
    }

    /// The first of `prefix0`, `prefix1`, ... whose slot `node` serves.
    pub fn key_served_by(&self, node: usize, prefix: &str) -> String {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|key| self.owner_of_slot(self.slot_of(key)) == node)
            .expect("some key")
    }

    /// Moves one slot to primary `to` by hand: IMPORTING on the target,
    /// MIGRATING on the source, `MIGRATE ... KEYS` until the slot is empty
    /// on the source, then `SETSLOT NODE` on the target, the source and
    /// every other primary.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.owner_of_slot(slot);
        assert_ne!(from, to, "slot {slot} is on node {to} already");
        let slot_text = slot.to_string();
        let (from_id, to_id) = (self.id(from).to_string(), self.id(to).to_string());
        let mut source = self.connection(from);
        let mut target = self.connection(to);
        let setslot = |con: &mut Connection, args: &[&str], node: usize| {
            let mut all = vec!["CLUSTER", "SETSLOT", &slot_text];
            all.extend_from_slice(args);
            text(con, &all)
                .unwrap_or_else(|error| panic!("{all:?} on node {node}: {error}\n{}", self.logs()));
        };
        setslot(&mut target, &["IMPORTING", &from_id], to);
        setslot(&mut source, &["MIGRATING", &to_id], from);
        let target_port = self.port(to).to_string();
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec![
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                "10000",
                "KEYS",
            ];
            migrate.extend(keys.iter().map(String::as_str));
            text(&mut source, &migrate)
                .unwrap_or_else(|error| panic!("MIGRATE of {keys:?}: {error}\n{}", self.logs()));
        }
        setslot(&mut target, &["NODE", &to_id], to);
        setslot(&mut source, &["NODE", &to_id], from);
        for other in self.primaries() {
            if other != from && other != to {
                let mut con = self.connection(other);
                setslot(&mut con, &["NODE", &to_id], other);
            }
        }
        self.wait_stable(&format!("slot {slot} to move to node {to}"));
    }

    /// Starts an atomic slot migration (Valkey 9's `CLUSTER MIGRATESLOTS`)
    /// of the slot ranges `ranges` (each first and last, inclusive, all
    /// served by one node) to primary `to`; returns the source node.
    pub fn start_migrate_slots(&self, ranges: &[(u16, u16)], to: usize) -> usize {
        let from = self.owner_of_slot(ranges[0].0);
        assert_ne!(from, to, "slots {ranges:?} are on node {to} already");
        let bounds: Vec<String> = ranges
            .iter()
            .flat_map(|&(first, last)| [first.to_string(), last.to_string()])
            .collect();
        let mut args = vec!["CLUSTER", "MIGRATESLOTS", "SLOTSRANGE"];
        args.extend(bounds.iter().map(String::as_str));
        args.extend(["NODE", self.id(to)]);
        let mut con = self.connection(from);
        text(&mut con, &args)
            .unwrap_or_else(|error| panic!("{args:?} on node {from}: {error}\n{}", self.logs()));
        from
    }

    /// The state of the newest slot migration job node `node` knows of
    /// (`CLUSTER GETSLOTMIGRATIONS`: "success", "failed", "cancelled",
    /// "replicating", ...) and its message; `None` if it knows none.
    pub fn migration_state(&self, node: usize) -> Option<(String, String)> {
        let mut con = self.connection(node);
        let reply = call(&mut con, &[b"CLUSTER", b"GETSLOTMIGRATIONS"]).ok()?;
        let Value::Array(jobs) = reply else {
            return None;
        };
        // Newest first.
        let job = jobs.into_iter().next()?;
        let fields: Vec<(String, String)> = match job {
            Value::Array(items) => items
                .chunks(2)
                .map(|pair| (value_text(&pair[0]), value_text(&pair[1])))
                .collect(),
            Value::Map(items) => items
                .iter()
                .map(|(key, value)| (value_text(key), value_text(value)))
                .collect(),
            _ => return None,
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        Some((field("state"), field("message")))
    }

    /// Waits until node `node`'s newest migration job is in one of
    /// `states`; panics with the logs if it ends in another final state
    /// or does not get there within the deadline. Returns the state.
    pub fn wait_migration(&self, node: usize, states: &[&str]) -> String {
        let mut last = None;
        let reached = wait_until(WAIT, || {
            last = self.migration_state(node);
            match &last {
                Some((state, _)) if states.contains(&state.as_str()) => true,
                Some((state, message))
                    if ["success", "failed", "cancelled"].contains(&state.as_str()) =>
                {
                    panic!(
                        "slot migration on node {node} ended {state} ({message}), not {states:?}\n{}",
                        self.logs()
                    )
                }
                _ => false,
            }
        });
        if !reached {
            panic!(
                "slot migration on node {node}: not {states:?} within {WAIT:?} (last {last:?})\n{}",
                self.logs()
            );
        }
        last.expect("reached").0
    }

    /// An atomic slot migration of `ranges` to primary `to`, waited for
    /// until the source says it succeeded and the cluster agrees.
    pub fn migrate_slots(&self, ranges: &[(u16, u16)], to: usize) {
        let started = Instant::now();
        let from = self.start_migrate_slots(ranges, to);
        self.wait_migration(from, &["success"]);
        self.wait_stable(&format!("slots {ranges:?} to migrate to node {to}"));
        eprintln!(
            "atomic migration of slots {ranges:?} from node {from} to {to}: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    /// The slot ranges node `node` serves, as it sees them.
    pub fn slot_ranges_of(&self, node: usize) -> Vec<(u16, u16)> {
        let view = self
            .view(node)
            .unwrap_or_else(|| panic!("node {node} does not answer\n{}", self.logs()));
        view.iter()
            .find(|line| line.has_flag("myself"))
            .map(|line| line.slots.clone())
            .unwrap_or_default()
    }

    /// `redis-cli --cluster reshard` of `slots` slots from `from` to `to`,
    /// after the nodes agree (redis-cli refuses otherwise). It returns as
    /// soon as redis-cli is done: gossip may still be spreading the last
    /// moves (the next reshard waits for them).
    pub fn reshard(&self, from: usize, to: usize, slots: usize) {
        let started = Instant::now();
        self.wait_stable("the cluster to settle before a reshard");
        let settled = started.elapsed();
        let mut command = Command::new(cli_binary());
        command.args([
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{}", self.port(from)),
            "--cluster-from",
            self.id(from),
            "--cluster-to",
            self.id(to),
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]);
        self.run_cli(command, "redis-cli --cluster reshard");
        eprintln!(
            "reshard of {slots} slots from node {from} to {to}: settled in {:.1} s, moved in {:.1} s",
            settled.as_secs_f64(),
            (started.elapsed() - settled).as_secs_f64()
        );
    }

    /// `CLUSTER FAILOVER` on node `replica`; waits until it is the primary
    /// and its old primary a replica.
    pub fn failover(&self, replica: usize) {
        let old = self.primary_of(replica);
        let mut con = self.connection(replica);
        text(&mut con, &["CLUSTER", "FAILOVER"]).unwrap_or_else(|error| {
            panic!(
                "CLUSTER FAILOVER on node {replica}: {error}\n{}",
                self.logs()
            )
        });
        let swapped = wait_until(WAIT, || {
            self.role(replica).as_deref() == Some("master")
                && self.role(old).as_deref() == Some("slave")
        });
        self.check(swapped, &format!("node {replica} to take over from {old}"));
        self.wait_stable(&format!("the failover to node {replica}"));
    }

    /// The primary node `replica` replicates, as it sees it.
    fn primary_of(&self, replica: usize) -> usize {
        let view = self
            .view(replica)
            .unwrap_or_else(|| panic!("node {replica} does not answer\n{}", self.logs()));
        let me = view
            .iter()
            .find(|line| line.has_flag("myself"))
            .expect("myself");
        let master = me
            .master
            .clone()
            .unwrap_or_else(|| panic!("node {replica} is no replica"));
        self.index_of_id(&master)
    }

    /// kill -9 of primary `primary`; waits until one of its replicas is
    /// promoted and the cluster serves every slot again; returns that one.
    pub fn kill_primary(&mut self, primary: usize) -> usize {
        let replicas = self.replicas_of(primary);
        assert!(!replicas.is_empty(), "node {primary} has no replica");
        self.nodes[primary].server.kill();
        self.nodes[primary].down = true;
        let mut promoted = None;
        let done = wait_until(WAIT, || {
            promoted = replicas
                .iter()
                .copied()
                .find(|&r| self.role(r).as_deref() == Some("master"));
            promoted.is_some()
        });
        self.check(
            done,
            &format!("a replica of killed node {primary} to take over"),
        );
        self.wait_stable(&format!("the promotion after killing node {primary}"));
        promoted.expect("checked")
    }

    /// Starts a new node and makes it a replica of `primary`.
    pub fn add_replica(&mut self, primary: usize) -> usize {
        let server = RedisServer::start_with(cluster_options(&self.options));
        let mut con = server.connection();
        let id = text(&mut con, &["CLUSTER", "MYID"]).unwrap();
        let port = self.port(primary).to_string();
        text(&mut con, &["CLUSTER", "MEET", "127.0.0.1", &port]).unwrap();
        self.nodes.push(Node {
            server,
            id,
            down: false,
        });
        let replica = self.nodes.len() - 1;
        self.replicate(replica, primary);
        self.wait_stable(&format!("new node {replica} to replicate node {primary}"));
        replica
    }

    /// `CONFIG SET name value` on one node.
    pub fn config_set(&self, node: usize, name: &str, value: &str) {
        let mut con = self.connection(node);
        text(&mut con, &["CONFIG", "SET", name, value]).unwrap_or_else(|error| {
            panic!("CONFIG SET {name} on node {node}: {error}\n{}", self.logs())
        });
    }

    /// CAMPAIGN.FLUSH on every current primary.
    pub fn flush_primaries(&self) {
        for node in self.primaries() {
            let mut con = self.connection(node);
            match call(&mut con, &[b"CAMPAIGN.FLUSH", b"60000"]) {
                Ok(Value::Int(_)) => {}
                other => panic!("CAMPAIGN.FLUSH on node {node}: {other:?}\n{}", self.logs()),
            }
        }
    }

    /// Every node not killed on purpose is still running (no crash).
    pub fn assert_alive(&mut self) {
        let dead: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].down && !self.nodes[i].server.is_alive())
            .collect();
        if !dead.is_empty() {
            panic!("nodes {dead:?} died\n{}", self.logs());
        }
    }

    /// The end of every node's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let log = node.server.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!(
                "----- node {i} port {} id {}{} -----\n{}\n",
                node.server.port,
                &node.id[..8],
                if node.down { " (killed)" } else { "" },
                tail.join("\n")
            ));
        }
        out
    }

    /// The servers themselves, in node order (for tests written against
    /// plain servers).
    pub fn into_servers(self) -> Vec<RedisServer> {
        self.nodes.into_iter().map(|node| node.server).collect()
    }
}

/// A one-shard cluster, a primary and its replica, each with the module.
pub fn cluster_pair(options: RedisOptions) -> (RedisServer, RedisServer) {
    let mut servers = Cluster::start(1, 1, options).into_servers();
    let replica = servers.pop().expect("two nodes");
    let primary = servers.pop().expect("two nodes");
    (primary, replica)
}
