//! Every internal wire form, built and parsed here and nowhere else: what
//! the module sends to replicas and the AOF besides the clients' own
//! commands, and what an AOF rewrite writes.
//!
//! - `CAMPAIGN.SYNC key CHANGE ADD|REM first-version member ...`: a client's
//!   write, as the members that changed and their versions (first-version,
//!   the next, ...): applied and journaled with exactly those versions.
//! - `CAMPAIGN.SYNC key ADD|REM member ...`: set content, never journaled
//!   (a rebuild's diff, an AOF rewrite of a key).
//! - `CAMPAIGN.SYNC key REPLACE encoding-version blob`: a whole set.
//! - `CAMPAIGN.SYNC key VERSION v`: the campaign's newest version (after a
//!   rebuilt set, in an AOF rewrite).
//! - `CAMPAIGN.SYNC key INCOMPLETE`: a missing key becomes an empty
//!   incomplete campaign (a write the database could not be waited for;
//!   an AOF rewrite of an incomplete campaign, followed by its members as
//!   set content: ADD the present, REM the absent).
//! - `CAMPAIGN.SYNC key PRUNE v`: journal "the campaign is now the set its
//!   changes above v say" (`Op::Prune`; a campaign value that landed under
//!   this name), followed by its members as a `CHANGE ADD`.
//! - `CAMPAIGN.SYNC key REBUILT v`: a rebuild ended (its set was sent just
//!   before): the campaign's newest version, and the `campaign.rebuild`
//!   keyspace event the primary emitted.
//! - `CAMPAIGN.SYNC key SHADOW id PART blob`, `... SHADOW id SWAP`, `...
//!   SHADOW id DROP`: a rebuilt set sent in bounded parts into a shadow,
//!   then swapped in under `key` (or dropped); see `core::shadow`.
//! - `CAMPAIGN.JOURNAL TRIM seq`: entries through `seq` are committed.
//! - `CAMPAIGN.JOURNAL ENTRIES first-seq [ADD|REM|PRUNE campaign member
//!   version] ...` (a prune's member is the empty string): journal entries and their numbering, written when an AOF rewrite
//!   without the RDB preamble starts (applied idempotently). `LOAD`, the
//!   same without versions, is what older versions wrote; it still loads.
//! - `DEL key`: a rebuild found the campaign gone from the database.

use std::borrow::Cow;

use crate::redis_glue::ffi::api;
use redis_module::{raw, Context, RedisString};

use crate::core::member_set::ENCODING_VERSION;
use crate::core::shadow::decode_part;
use crate::core::{
    validate_text, BlobReader, Campaign, Entry, EntryRef, Journal, Op, PRUNE_MEMBER,
};
use crate::error::CampaignError;
use crate::redis_glue::ffi::with_redis_strings;

pub const SYNC_COMMAND: &str = "CAMPAIGN.SYNC";
pub const JOURNAL_COMMAND: &str = "CAMPAIGN.JOURNAL";

/// Members per `CAMPAIGN.SYNC ... ADD|REM` command: large enough to keep the
/// AOF compact, small enough to keep each replayed command cheap.
pub const MEMBERS_PER_SYNC: usize = 512;

/// One command to send to replicas and the AOF, or to write into an AOF.
pub struct WireCommand<'a> {
    pub command: &'static str,
    pub args: Vec<Cow<'a, [u8]>>,
}

impl WireCommand<'_> {
    /// Sends the command to replicas and the AOF (MULTI/EXEC-wrapped with
    /// the rest of this call's effects).
    pub fn replicate(&self, ctx: &Context) {
        let args: Vec<&[u8]> = self.args.iter().map(AsRef::as_ref).collect();
        ctx.replicate(self.command, &args[..]);
    }

    /// Writes the command into an AOF being rewritten.
    ///
    /// # Safety
    /// `aof` must be the live IO handle of the `aof_rewrite` call in progress.
    pub unsafe fn emit_aof(&self, aof: *mut raw::RedisModuleIO) {
        let Some(emit) = api!(RedisModule_EmitAOF) else {
            return;
        };
        let command = std::ffi::CString::new(self.command).expect("command names hold no NUL");
        let args: Vec<&[u8]> = self.args.iter().map(AsRef::as_ref).collect();
        with_redis_strings(&args, |argv, count| {
            // "v": an array of Redis strings and its length.
            // SAFETY: `aof` is live (caller), `argv` holds `count` strings.
            unsafe { emit(aof, command.as_ptr(), c"v".as_ptr(), argv, count) };
        });
    }
}

fn word(text: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(text.as_bytes())
}

fn number(value: impl ToString) -> Cow<'static, [u8]> {
    Cow::Owned(value.to_string().into_bytes())
}

/// `CAMPAIGN.SYNC key ADD|REM members...`, one command per
/// `MEMBERS_PER_SYNC` members.
pub fn sync_members<'a>(
    key: &'a [u8],
    op: Op,
    members: &'a [impl AsRef<str>],
) -> impl Iterator<Item = WireCommand<'a>> {
    members.chunks(MEMBERS_PER_SYNC).map(move |chunk| {
        let mut args = Vec::with_capacity(chunk.len() + 2);
        args.push(Cow::Borrowed(key));
        args.push(word(op.word()));
        args.extend(
            chunk
                .iter()
                .map(|member| Cow::Borrowed(member.as_ref().as_bytes())),
        );
        WireCommand {
            command: SYNC_COMMAND,
            args,
        }
    })
}

/// `CAMPAIGN.SYNC key CHANGE ADD|REM first-version members...`: the members
/// a client's write changed, with their versions.
pub fn sync_change<'a>(
    key: &'a [u8],
    op: Op,
    first_version: u64,
    members: &[&'a str],
) -> WireCommand<'a> {
    let mut args = Vec::with_capacity(members.len() + 4);
    args.extend([
        Cow::Borrowed(key),
        word("CHANGE"),
        word(op.word()),
        number(first_version),
    ]);
    args.extend(
        members
            .iter()
            .map(|member| Cow::Borrowed(member.as_bytes())),
    );
    WireCommand {
        command: SYNC_COMMAND,
        args,
    }
}

/// Sends `CAMPAIGN.SYNC key CHANGE ADD|REM version member` for one changed
/// member (a queue consumer's ADD: the hot write path) straight through
/// `RedisModule_Replicate`: the key is passed by reference and only the
/// small words are made into strings, instead of a string per argument.
pub fn replicate_one_change(ctx: &Context, key: &RedisString, op: Op, version: u64, member: &str) {
    let Some(replicate) = api!(RedisModule_Replicate) else {
        return;
    };
    let op = match op {
        Op::Add => c"ADD",
        Op::Remove => c"REM",
        // Not a client's change: sent by `sync_prune` only.
        Op::Prune => return,
    };
    // Versions stay below 2^63 (see `core::version`).
    let version = version.min(i64::MAX as u64) as std::os::raw::c_longlong;
    // SAFETY: a live context and key; "s" a RedisModuleString, "c" C
    // strings, "l" a long long, "b" a pointer and a length, in that order.
    unsafe {
        replicate(
            ctx.ctx,
            c"CAMPAIGN.SYNC".as_ptr(),
            c"scclb".as_ptr(),
            key.inner,
            c"CHANGE".as_ptr(),
            op.as_ptr(),
            version,
            member.as_ptr().cast::<std::os::raw::c_char>(),
            member.len(),
        );
    }
}

/// `CAMPAIGN.SYNC key VERSION v`.
pub fn sync_version(key: &[u8], version: u64) -> WireCommand<'_> {
    WireCommand {
        command: SYNC_COMMAND,
        args: vec![Cow::Borrowed(key), word("VERSION"), number(version)],
    }
}

/// `CAMPAIGN.SYNC key INCOMPLETE`.
pub fn sync_incomplete(key: &[u8]) -> WireCommand<'_> {
    WireCommand {
        command: SYNC_COMMAND,
        args: vec![Cow::Borrowed(key), word("INCOMPLETE")],
    }
}

/// `CAMPAIGN.SYNC key PRUNE v`.
pub fn sync_prune(key: &[u8], version: u64) -> WireCommand<'_> {
    WireCommand {
        command: SYNC_COMMAND,
        args: vec![Cow::Borrowed(key), word("PRUNE"), number(version)],
    }
}

/// `CAMPAIGN.SYNC key REBUILT v`.
pub fn sync_rebuilt(key: &[u8], version: u64) -> WireCommand<'_> {
    WireCommand {
        command: SYNC_COMMAND,
        args: vec![Cow::Borrowed(key), word("REBUILT"), number(version)],
    }
}

/// `CAMPAIGN.SYNC key REPLACE version blob`: the whole set, encoded.
pub fn sync_replace<'a>(key: &'a [u8], encoded_set: &'a [u8]) -> WireCommand<'a> {
    WireCommand {
        command: SYNC_COMMAND,
        args: vec![
            Cow::Borrowed(key),
            word("REPLACE"),
            number(ENCODING_VERSION),
            Cow::Borrowed(encoded_set),
        ],
    }
}

/// What a `CAMPAIGN.SYNC key SHADOW id ...` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowStep<'a> {
    /// Adds a part (encoded members, `core::shadow::encode_part`).
    Part(&'a [u8]),
    /// Puts the collected set in place under the key.
    Swap,
    /// Forgets the shadow.
    Drop,
}

/// `CAMPAIGN.SYNC key SHADOW id PART blob|SWAP|DROP`.
pub fn sync_shadow<'a>(key: &'a [u8], id: u64, step: ShadowStep<'a>) -> WireCommand<'a> {
    let mut args = vec![Cow::Borrowed(key), word("SHADOW"), number(id)];
    match step {
        ShadowStep::Part(part) => args.extend([word("PART"), Cow::Borrowed(part)]),
        ShadowStep::Swap => args.push(word("SWAP")),
        ShadowStep::Drop => args.push(word("DROP")),
    }
    WireCommand {
        command: SYNC_COMMAND,
        args,
    }
}

/// `CAMPAIGN.JOURNAL TRIM seq`.
pub fn journal_trim(through: u64) -> WireCommand<'static> {
    WireCommand {
        command: JOURNAL_COMMAND,
        args: vec![word("TRIM"), number(through)],
    }
}

/// The whole journal as `CAMPAIGN.JOURNAL ENTRIES` commands of at most
/// `MEMBERS_PER_SYNC` entries; an empty journal still gives one `ENTRIES
/// next-seq`, which carries its numbering.
pub fn journal_snapshot(journal: &Journal) -> Vec<WireCommand<'_>> {
    if journal.is_empty() {
        return vec![journal_load(journal.next_seq(), std::iter::empty())];
    }
    let mut entries = journal.iter().peekable();
    let mut commands = Vec::new();
    while let Some(&(first, _)) = entries.peek() {
        let chunk = entries.by_ref().take(MEMBERS_PER_SYNC).map(|(_, e)| e);
        commands.push(journal_load(first, chunk));
    }
    commands
}

/// `CAMPAIGN.JOURNAL ENTRIES first [op campaign member version]...` for
/// consecutive entries starting at sequence number `first` (version 0: an
/// entry journaled before changes carried versions).
pub fn journal_load<'a>(
    first: u64,
    entries: impl Iterator<Item = EntryRef<'a>>,
) -> WireCommand<'a> {
    let mut args = vec![word("ENTRIES"), number(first)];
    for entry in entries {
        args.push(word(entry.op.word()));
        args.push(Cow::Borrowed(entry.campaign.as_bytes()));
        // Ids and UUIDs are stored in binary: formatted here.
        args.push(match entry.member_text() {
            Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
            Cow::Owned(text) => Cow::Owned(text.into_bytes()),
        });
        args.push(number(entry.version.unwrap_or(0)));
    }
    WireCommand {
        command: JOURNAL_COMMAND,
        args,
    }
}

/// `DEL key`.
pub fn delete(key: &[u8]) -> WireCommand<'_> {
    WireCommand {
        command: "DEL",
        args: vec![Cow::Borrowed(key)],
    }
}

/// A parsed `CAMPAIGN.SYNC`.
pub enum Sync<'a> {
    /// `ADD|REM members` (set content, `first_version` None) or `CHANGE
    /// ADD|REM first-version members` (a change with its versions).
    Members {
        key: &'a RedisString,
        op: Op,
        members: Vec<&'a str>,
        first_version: Option<u64>,
    },
    Replace {
        key: &'a RedisString,
        campaign: Campaign,
    },
    Version {
        key: &'a RedisString,
        version: u64,
    },
    Incomplete {
        key: &'a RedisString,
    },
    /// Journal a prune of the campaign at `version` (`Op::Prune`).
    Prune {
        key: &'a RedisString,
        version: u64,
    },
    /// A rebuild ended with the campaign at `version`.
    Rebuilt {
        key: &'a RedisString,
        version: u64,
    },
    /// A step of shadow `id`; a part's members are decoded and validated.
    Shadow {
        key: &'a RedisString,
        id: u64,
        step: ParsedShadowStep<'a>,
    },
}

pub enum ParsedShadowStep<'a> {
    Part(Vec<&'a str>),
    Swap,
    Drop,
}

/// Parses `CAMPAIGN.SYNC` (`args[0]` is the command name).
pub fn parse_sync(args: &[RedisString]) -> Result<Sync<'_>, CampaignError> {
    if args.len() == 3 && args[2].as_slice().eq_ignore_ascii_case(b"INCOMPLETE") {
        return Ok(Sync::Incomplete { key: &args[1] });
    }
    if args.len() < 4 {
        return Err(CampaignError::WrongArity);
    }
    let key = &args[1];
    let form = args[2].as_slice().to_ascii_uppercase();
    if form == b"REPLACE" {
        if args.len() != 5 {
            return Err(CampaignError::WrongArity);
        }
        let version = args[3]
            .parse_integer()
            .map_err(|_| CampaignError::Syntax("bad encoding version".into()))?;
        let campaign =
            Campaign::decode(&mut BlobReader::new(args[4].as_slice()), version as i32)
                .map_err(|error| CampaignError::Syntax(format!("bad campaign payload: {error}")))?;
        return Ok(Sync::Replace { key, campaign });
    }
    if form == b"VERSION" || form == b"REBUILT" || form == b"PRUNE" {
        if args.len() != 4 {
            return Err(CampaignError::WrongArity);
        }
        let version = parse_version(&args[3])?;
        return Ok(match form.as_slice() {
            b"VERSION" => Sync::Version { key, version },
            b"PRUNE" => Sync::Prune { key, version },
            _ => Sync::Rebuilt { key, version },
        });
    }
    if form == b"SHADOW" {
        return parse_shadow(key, args);
    }
    if form == b"CHANGE" {
        if args.len() < 6 {
            return Err(CampaignError::WrongArity);
        }
        let op = Op::from_word(&args[3].as_slice().to_ascii_uppercase())
            .filter(|&op| op != Op::Prune)
            .ok_or_else(|| CampaignError::Syntax("unknown CAMPAIGN.SYNC CHANGE form".into()))?;
        let first_version = parse_version(&args[4])?;
        let members = parse_members(&args[5..], 5)?;
        return Ok(Sync::Members {
            key,
            op,
            members,
            first_version: Some(first_version),
        });
    }
    let op = Op::from_word(&form)
        .filter(|&op| op != Op::Prune)
        .ok_or_else(|| CampaignError::Syntax("unknown CAMPAIGN.SYNC form".into()))?;
    let members = parse_members(&args[3..], 3)?;
    Ok(Sync::Members {
        key,
        op,
        members,
        first_version: None,
    })
}

/// `CAMPAIGN.SYNC key SHADOW id PART blob|SWAP|DROP`.
fn parse_shadow<'a>(
    key: &'a RedisString,
    args: &'a [RedisString],
) -> Result<Sync<'a>, CampaignError> {
    let id = args
        .get(3)
        .ok_or(CampaignError::WrongArity)?
        .parse_unsigned_integer()
        .map_err(|_| CampaignError::Syntax("the shadow id must be an unsigned integer".into()))?;
    let step = match (
        args.get(4).map(|arg| arg.as_slice().to_ascii_uppercase()),
        args.len(),
    ) {
        (Some(step), 6) if step == b"PART" => {
            let members = decode_part(args[5].as_slice())
                .map_err(|error| CampaignError::Syntax(format!("bad shadow part: {error}")))?;
            ParsedShadowStep::Part(members)
        }
        (Some(step), 5) if step == b"SWAP" => ParsedShadowStep::Swap,
        (Some(step), 5) if step == b"DROP" => ParsedShadowStep::Drop,
        _ => {
            return Err(CampaignError::Syntax(
                "unknown CAMPAIGN.SYNC SHADOW form".into(),
            ))
        }
    };
    Ok(Sync::Shadow { key, id, step })
}

fn parse_version(arg: &RedisString) -> Result<u64, CampaignError> {
    arg.parse_unsigned_integer()
        .map_err(|_| CampaignError::Syntax("the version must be an unsigned integer".into()))
}

/// Members starting at argument position `first_position`, validated.
fn parse_members(args: &[RedisString], first_position: usize) -> Result<Vec<&str>, CampaignError> {
    args.iter()
        .enumerate()
        .map(|(index, arg)| {
            validate_text(arg.as_slice(), None).map_err(|reason| CampaignError::InvalidMember {
                position: index + first_position,
                reason,
            })
        })
        .collect()
}

/// A parsed `CAMPAIGN.JOURNAL`.
pub enum JournalCommand {
    Trim { through: u64 },
    Load { first: u64, entries: Vec<Entry> },
}

/// Parses `CAMPAIGN.JOURNAL` (`args[0]` is the command name).
pub fn parse_journal(args: &[RedisString]) -> Result<JournalCommand, CampaignError> {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let sequence = args[2]
        .parse_unsigned_integer()
        .map_err(|_| CampaignError::Syntax("the sequence number must be an integer".into()))?;
    match args[1].as_slice().to_ascii_uppercase().as_slice() {
        b"TRIM" if args.len() == 3 => Ok(JournalCommand::Trim { through: sequence }),
        b"ENTRIES" if (args.len() - 3).is_multiple_of(4) => {
            let entries = args[3..]
                .chunks(4)
                .map(parse_entry)
                .collect::<Result<Vec<Entry>, CampaignError>>()?;
            Ok(JournalCommand::Load {
                first: sequence,
                entries,
            })
        }
        // Written by versions whose entries had no version.
        b"LOAD" if (args.len() - 3).is_multiple_of(3) => {
            let entries = args[3..]
                .chunks(3)
                .map(parse_entry)
                .collect::<Result<Vec<Entry>, CampaignError>>()?;
            Ok(JournalCommand::Load {
                first: sequence,
                entries,
            })
        }
        _ => Err(CampaignError::Syntax(
            "unknown CAMPAIGN.JOURNAL form".into(),
        )),
    }
}

/// `op campaign member [version]` (version 0 or absent: none); a
/// prune's member is the empty string.
fn parse_entry(words: &[RedisString]) -> Result<Entry, CampaignError> {
    let op = Op::from_word(words[0].as_slice()).ok_or_else(|| {
        CampaignError::Syntax("journal operation must be ADD, REM or PRUNE".into())
    })?;
    let text = |position: usize| {
        if position == 2 && op == Op::Prune {
            return match words[position].as_slice() {
                b"" => Ok(PRUNE_MEMBER),
                _ => Err(CampaignError::Syntax(
                    "a journal PRUNE entry's member must be empty".into(),
                )),
            };
        }
        validate_text(words[position].as_slice(), None)
            .map_err(|reason| CampaignError::InvalidMember { position, reason })
    };
    let version = match words.get(3) {
        Some(word) => Some(parse_version(word)?).filter(|&version| version > 0),
        None => None,
    };
    Ok(Entry {
        op,
        campaign: text(1)?.into(),
        member: text(2)?.into(),
        version,
    })
}
