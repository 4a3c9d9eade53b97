//! `CLUSTER NODES` as data.

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    pub port: u16,
    pub flags: Vec<String>,
    /// The primary's id, for a replica.
    pub master: Option<String>,
    /// Owned slot ranges, inclusive; migrating/importing marks are left out.
    pub slots: Vec<(u16, u16)>,
    /// `[slot->-id]` / `[slot-<-id]` marks: a slot move is open.
    pub open_slots: bool,
}

impl NodeLine {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// What every node's view must agree on: role, primary and slots.
    pub fn shape(&self) -> String {
        let role = if self.is_master() { "master" } else { "slave" };
        format!(
            "{} {role} {} {:?}",
            self.id,
            self.master.as_deref().unwrap_or("-"),
            self.slots
        )
    }
}

pub fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<NodeLine> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    // "127.0.0.1:7001@17001" or "127.0.0.1:7001@17001,hostname"
    let address = fields[1].split(['@', ',']).next()?;
    let port = address.rsplit(':').next()?.parse().unwrap_or(0);
    let mut slots = Vec::new();
    let mut open_slots = false;
    for field in &fields[8..] {
        if field.starts_with('[') {
            open_slots = true;
            continue;
        }
        let mut bounds = field.split('-').map(|n| n.parse::<u16>().ok());
        match (bounds.next().flatten(), bounds.next()) {
            (Some(slot), None) => slots.push((slot, slot)),
            (Some(first), Some(Some(last))) => slots.push((first, last)),
            _ => {}
        }
    }
    slots.sort_unstable();
    Some(NodeLine {
        id: fields[0].to_string(),
        port,
        flags: fields[2].split(',').map(str::to_string).collect(),
        master: (fields[3] != "-").then(|| fields[3].to_string()),
        slots,
        open_slots,
    })
}
