//! `COMMAND INFO` / `COMMAND DOCS` text and key specs for every command,
//! registered through `RedisModule_SetCommandInfo` (Redis 7.0+), which the
//! `redis_module!` macro does not expose.

use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr;

use redis_module::{raw, Context};

const SINCE: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Copy)]
enum ArgKind {
    Key,
    Text,
    Integer,
}

struct ArgDoc {
    name: &'static str,
    kind: ArgKind,
    optional: bool,
    multiple: bool,
}

struct CommandDoc {
    name: &'static str,
    summary: &'static str,
    complexity: &'static str,
    /// Redis convention: N exactly, -N at least N (counting the command name).
    arity: c_int,
    /// `REDISMODULE_CMD_KEY_*` flags of the one key (argument 1), if any.
    key_flags: Option<u32>,
    args: &'static [ArgDoc],
}

const fn arg(name: &'static str, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        name,
        kind,
        optional: false,
        multiple: false,
    }
}

const fn optional(name: &'static str, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        optional: true,
        ..arg(name, kind)
    }
}

const fn many(name: &'static str, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        multiple: true,
        ..arg(name, kind)
    }
}

const CAMPAIGN_AND_MEMBERS: &[ArgDoc] =
    &[arg("campaign", ArgKind::Key), many("member", ArgKind::Text)];

const READ_KEY: u32 = raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS;

const DOCS: &[CommandDoc] = &[
    CommandDoc {
        name: "campaign.add",
        summary: "Adds members to a campaign; replies with the number that were new.",
        complexity: "O(N) where N is the number of members given.",
        arity: -3,
        key_flags: Some(raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_INSERT),
        args: CAMPAIGN_AND_MEMBERS,
    },
    CommandDoc {
        name: "campaign.rem",
        summary: "Removes members from a campaign; removing the last one deletes the key.",
        complexity: "O(N) where N is the number of members given.",
        arity: -3,
        key_flags: Some(raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_DELETE),
        args: CAMPAIGN_AND_MEMBERS,
    },
    CommandDoc {
        name: "campaign.has",
        summary: "Answers 1 if the member is in the campaign, else 0.",
        complexity: "O(1)",
        arity: 3,
        key_flags: Some(READ_KEY),
        args: &[arg("campaign", ArgKind::Key), arg("member", ArgKind::Text)],
    },
    CommandDoc {
        name: "campaign.mhas",
        summary: "Answers 1 or 0 for each member, in the order given.",
        complexity: "O(N) where N is the number of members given.",
        arity: -3,
        key_flags: Some(READ_KEY),
        args: CAMPAIGN_AND_MEMBERS,
    },
    CommandDoc {
        name: "campaign.card",
        summary: "Returns the number of members in a campaign.",
        complexity: "O(1)",
        arity: 2,
        key_flags: Some(raw::REDISMODULE_CMD_KEY_RO),
        args: &[arg("campaign", ArgKind::Key)],
    },
    CommandDoc {
        name: "campaign.flush",
        summary: "Waits until every journal entry that exists now is committed in PostgreSQL.",
        complexity: "O(N) where N is the number of pending entries, done in the background.",
        arity: -1,
        key_flags: None,
        args: &[optional("timeout-ms", ArgKind::Integer)],
    },
    CommandDoc {
        name: "campaign.status",
        summary: "Reports the database connection, the journal and the flusher's figures.",
        complexity: "O(1)",
        arity: 1,
        key_flags: None,
        args: &[],
    },
    CommandDoc {
        name: "campaign.journal",
        summary: "Internal: journal trims and entries, from the primary or the AOF only.",
        complexity: "O(N) where N is the number of entries trimmed or loaded.",
        arity: -3,
        key_flags: None,
        args: &[
            arg("subcommand", ArgKind::Text),
            arg("sequence", ArgKind::Integer),
            optional("entries", ArgKind::Text),
        ],
    },
    CommandDoc {
        name: "campaign.sync",
        summary: "Internal: set content without journaling, from the primary or the AOF only.",
        complexity: "O(N) where N is the number of members given or encoded.",
        arity: -4,
        key_flags: Some(raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE),
        args: &[
            arg("campaign", ArgKind::Key),
            arg("form", ArgKind::Text),
            many("member", ArgKind::Text),
        ],
    },
    CommandDoc {
        name: "campaign.rebuild",
        summary: "Replaces the campaign with the database's rows; writes to it wait meanwhile.",
        complexity: "O(N) where N is the number of rows, done off the main thread.",
        arity: 2,
        key_flags: Some(raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE),
        args: &[arg("campaign", ArgKind::Key)],
    },
    CommandDoc {
        name: "campaign.verify",
        summary: "Compares the campaign's count and checksum with the database's.",
        complexity: "O(1) in Redis; O(N) rows in the database.",
        arity: 2,
        key_flags: Some(raw::REDISMODULE_CMD_KEY_RO),
        args: &[arg("campaign", ArgKind::Key)],
    },
    CommandDoc {
        name: "campaign.debug",
        summary: "Fault injection for tests; needs enable-debug-command.",
        complexity: "O(1)",
        arity: 2,
        key_flags: None,
        args: &[arg("subcommand", ArgKind::Text)],
    },
];

/// Strings handed to Redis must outlive the call; Redis copies them.
#[derive(Default)]
struct CStrings(Vec<CString>);

impl CStrings {
    fn keep(&mut self, text: &str) -> *const std::os::raw::c_char {
        let text = CString::new(text).expect("documentation text holds no NUL");
        let pointer = text.as_ptr();
        self.0.push(text);
        pointer
    }
}

pub fn register(ctx: &Context) -> Result<(), String> {
    // SAFETY: the API table is filled once by Redis before OnLoad runs.
    let api = unsafe { (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandInfo) };
    let (Some(get_command), Some(set_command_info)) = api else {
        // Before Redis 7.0: the legacy key positions still route the commands.
        return Ok(());
    };
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    for doc in DOCS {
        let mut strings = CStrings::default();
        let mut key_specs = key_specs(doc);
        let mut args = command_args(doc, &mut strings);
        let info = raw::RedisModuleCommandInfo {
            version: &version,
            summary: strings.keep(doc.summary),
            complexity: strings.keep(doc.complexity),
            since: strings.keep(SINCE),
            history: ptr::null_mut(),
            tips: ptr::null(),
            arity: doc.arity,
            key_specs: if doc.key_flags.is_some() {
                key_specs.as_mut_ptr()
            } else {
                ptr::null_mut()
            },
            args: args.as_mut_ptr(),
        };
        let name = strings.keep(doc.name);
        // SAFETY: every pointer in `info` points into locals alive until the
        // call returns; Redis copies what it keeps.
        let status = unsafe {
            let command = get_command(ctx.ctx, name);
            if command.is_null() {
                return Err(format!("command {} is not registered", doc.name));
            }
            set_command_info(command, &info)
        };
        if status != raw::REDISMODULE_OK as c_int {
            return Err(format!("Redis refused the documentation of {}", doc.name));
        }
    }
    Ok(())
}

/// One key spec for argument 1 plus the zeroed terminator Redis expects.
fn key_specs(doc: &CommandDoc) -> Vec<raw::RedisModuleCommandKeySpec> {
    // SAFETY: the key spec is plain data for which all-zero is the
    // documented "absent" value (it is also the list terminator).
    let mut specs = vec![unsafe { std::mem::zeroed::<raw::RedisModuleCommandKeySpec>() }; 2];
    if let Some(flags) = doc.key_flags {
        let spec = &mut specs[0];
        spec.flags = u64::from(flags);
        spec.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
        spec.bs.index.pos = 1;
        spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
        spec.fk.range.lastkey = 0;
        spec.fk.range.keystep = 1;
        spec.fk.range.limit = 0;
    }
    specs
}

/// The argument list plus the zeroed terminator Redis expects.
fn command_args(doc: &CommandDoc, strings: &mut CStrings) -> Vec<raw::RedisModuleCommandArg> {
    let mut args: Vec<raw::RedisModuleCommandArg> = doc
        .args
        .iter()
        .map(|arg| {
            // SAFETY: all-zero is a valid "unset" value for every field.
            let mut out = unsafe { std::mem::zeroed::<raw::RedisModuleCommandArg>() };
            out.name = strings.keep(arg.name);
            out.type_ = match arg.kind {
                ArgKind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                ArgKind::Text => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
            };
            out.key_spec_index = if matches!(arg.kind, ArgKind::Key) {
                0
            } else {
                -1
            };
            let mut flags = raw::REDISMODULE_CMD_ARG_NONE;
            if arg.optional {
                flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
            }
            if arg.multiple {
                flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
            }
            out.flags = flags as c_int;
            out
        })
        .collect();
    // SAFETY: as above; a zeroed entry ends the list.
    args.push(unsafe { std::mem::zeroed() });
    args
}
