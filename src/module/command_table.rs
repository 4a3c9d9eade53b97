//! The one table of the module's commands. Registration with Redis, the
//! hand-registered fast path of CAMPAIGN.HAS and `COMMAND DOCS` are all
//! produced from it: a command is named once, here.
//!
//! Commands are registered with `RedisModule_CreateCommand` directly (not
//! through `redis_module!`): each gets a `dispatch::<INDEX>` entry point
//! that tries the command's fast path, if any, and otherwise runs its
//! handler behind the panic guard.

use std::ffi::CString;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::redis_glue::ffi::api;
use redis_module::{raw, Context};

use super::command_docs::{arg, many, optional, ArgKind, CommandDoc, CAMPAIGN_AND_MEMBERS};
use super::{fast_has, fast_write};
use crate::commands::{debug, internal, membership, rebuild, write_behind};
use crate::redis_glue::panic_guard::{run_command, CommandHandler};

/// Answers a call straight from Redis's arguments, or `None` to leave it to
/// the ordinary handler.
///
/// # Safety
/// Called with the live context and argument vector of a command call.
pub type FastPath =
    unsafe fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> Option<c_int>;

pub struct CommandSpec {
    pub name: &'static str,
    pub handler: CommandHandler,
    pub fast_path: Option<FastPath>,
    /// Redis command flags (`write deny-oom`, `readonly fast`, ...).
    pub flags: &'static str,
    /// Legacy key positions: first, last, step (0, 0, 0: no key).
    pub keys: (c_int, c_int, c_int),
    /// ACL categories, on servers that let modules declare them (Redis
    /// 7.2+, Valkey); the module's own `campaign` category is added where
    /// the server can create one (Redis 7.4+).
    pub acl: &'static str,
    /// Registered only when this holds at load (`None`: always).
    pub only_if: Option<fn(&Context) -> bool>,
    pub doc: CommandDoc,
}

const READ_KEY: u32 = raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS;
const ONE_KEY: (c_int, c_int, c_int) = (1, 1, 1);
const NO_KEY: (c_int, c_int, c_int) = (0, 0, 0);

const COMMAND_COUNT: usize = 13;

pub static COMMANDS: [CommandSpec; COMMAND_COUNT] = [
    CommandSpec {
        name: "campaign.add",
        handler: membership::add,
        fast_path: Some(fast_write::add_in_place),
        flags: "write deny-oom",
        keys: ONE_KEY,
        acl: "write fast",
        only_if: None,
        doc: CommandDoc {
            summary: "Adds members to a campaign; replies with the number that were new.",
            complexity: "O(N) where N is the number of members given.",
            arity: -3,
            key_flags: Some(raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_INSERT),
            args: CAMPAIGN_AND_MEMBERS,
        },
    },
    CommandSpec {
        name: "campaign.rem",
        handler: membership::rem,
        fast_path: Some(fast_write::rem_in_place),
        flags: "write",
        keys: ONE_KEY,
        acl: "write fast",
        only_if: None,
        doc: CommandDoc {
            summary: "Removes members from a campaign; removing the last one deletes the key.",
            complexity: "O(N) where N is the number of members given.",
            arity: -3,
            key_flags: Some(raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_DELETE),
            args: CAMPAIGN_AND_MEMBERS,
        },
    },
    CommandSpec {
        name: "campaign.has",
        handler: membership::has,
        fast_path: Some(fast_has::has_in_place),
        flags: "readonly fast",
        keys: ONE_KEY,
        acl: "read fast",
        only_if: None,
        doc: CommandDoc {
            summary: "Answers 1 if the member is in the campaign, else 0.",
            complexity: "O(1)",
            arity: 3,
            key_flags: Some(READ_KEY),
            args: &[arg("campaign", ArgKind::Key), arg("member", ArgKind::Text)],
        },
    },
    CommandSpec {
        name: "campaign.mhas",
        handler: membership::mhas,
        fast_path: None,
        flags: "readonly",
        keys: ONE_KEY,
        acl: "read fast",
        only_if: None,
        doc: CommandDoc {
            summary: "Answers 1 or 0 for each member, in the order given.",
            complexity: "O(N) where N is the number of members given.",
            arity: -3,
            key_flags: Some(READ_KEY),
            args: CAMPAIGN_AND_MEMBERS,
        },
    },
    CommandSpec {
        name: "campaign.card",
        handler: membership::card,
        fast_path: None,
        flags: "readonly fast",
        keys: ONE_KEY,
        acl: "read fast",
        only_if: None,
        doc: CommandDoc {
            summary: "Returns the number of members in a campaign.",
            complexity: "O(1)",
            arity: 2,
            key_flags: Some(raw::REDISMODULE_CMD_KEY_RO),
            args: &[arg("campaign", ArgKind::Key)],
        },
    },
    CommandSpec {
        name: "campaign.flush",
        handler: write_behind::flush,
        fast_path: None,
        flags: "",
        keys: NO_KEY,
        acl: "slow blocking",
        only_if: None,
        doc: CommandDoc {
            summary: "Waits until every journal entry that exists now is committed in PostgreSQL.",
            complexity: "O(N) where N is the number of pending entries, done in the background.",
            arity: -1,
            key_flags: None,
            args: &[optional("timeout-ms", ArgKind::Integer)],
        },
    },
    CommandSpec {
        name: "campaign.rejected",
        handler: write_behind::rejected,
        fast_path: None,
        flags: "write",
        keys: NO_KEY,
        acl: "slow blocking",
        only_if: None,
        doc: CommandDoc {
            summary: "RETRY [campaign]: journals the changes the database refused (parked in <table>_rejected) anew, where no newer change of the member exists; replies with how many.",
            complexity: "O(N) where N is the number of parked changes, done in the background.",
            arity: -2,
            key_flags: None,
            args: &[arg("subcommand", ArgKind::Text), optional("campaign", ArgKind::Text)],
        },
    },
    CommandSpec {
        name: "campaign.status",
        handler: write_behind::status,
        fast_path: None,
        flags: "readonly",
        keys: NO_KEY,
        acl: "read fast",
        only_if: None,
        doc: CommandDoc {
            summary: "Reports the database connection, the journal and the flusher's figures.",
            complexity: "O(1)",
            arity: 1,
            key_flags: None,
            args: &[],
        },
    },
    CommandSpec {
        name: "campaign.journal",
        handler: internal::journal,
        fast_path: None,
        flags: "write",
        keys: NO_KEY,
        acl: "admin dangerous",
        only_if: None,
        doc: CommandDoc {
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
    },
    CommandSpec {
        name: "campaign.sync",
        handler: internal::sync,
        fast_path: None,
        flags: "write deny-oom",
        keys: ONE_KEY,
        acl: "admin dangerous",
        only_if: None,
        doc: CommandDoc {
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
    },
    CommandSpec {
        name: "campaign.rebuild",
        handler: rebuild::rebuild,
        fast_path: None,
        flags: "write",
        keys: ONE_KEY,
        acl: "write slow blocking",
        only_if: None,
        doc: CommandDoc {
            summary: "Replaces the campaign with the database's rows; writes to it wait meanwhile.",
            complexity: "O(N) where N is the number of rows, done off the main thread.",
            arity: 2,
            key_flags: Some(raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE),
            args: &[arg("campaign", ArgKind::Key)],
        },
    },
    CommandSpec {
        name: "campaign.verify",
        handler: rebuild::verify,
        fast_path: None,
        flags: "readonly",
        keys: ONE_KEY,
        acl: "read slow blocking",
        only_if: None,
        doc: CommandDoc {
            summary: "Compares the campaign's count and checksum with the database's.",
            complexity: "O(1) in Redis; O(N) rows in the database.",
            arity: 2,
            key_flags: Some(raw::REDISMODULE_CMD_KEY_RO),
            args: &[arg("campaign", ArgKind::Key)],
        },
    },
    CommandSpec {
        name: "campaign.debug",
        handler: debug::debug,
        fast_path: None,
        flags: "admin",
        keys: NO_KEY,
        acl: "admin dangerous",
        only_if: Some(debug::registered),
        doc: CommandDoc {
            summary: "Fault injection for tests; needs enable-debug-command.",
            complexity: "O(1)",
            arity: -2,
            key_flags: None,
            args: &[
                arg("subcommand", ArgKind::Text),
                optional("key", ArgKind::Text),
            ],
        },
    },
];

type RawCommand =
    extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

/// The entry point Redis calls for `COMMANDS[INDEX]`.
extern "C" fn dispatch<const INDEX: usize>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let spec = &COMMANDS[INDEX];
    if let Some(fast_path) = spec.fast_path {
        // SAFETY: Redis passes this call's live context and `argc` arguments.
        let answered = catch_unwind(AssertUnwindSafe(|| unsafe { fast_path(ctx, argv, argc) }));
        // A panic falls through to the guarded handler, which answers
        // (the write fast paths answer their own: a write must not run twice).
        if let Ok(Some(status)) = answered {
            return status;
        }
    }
    let context = Context::new(ctx);
    let args = redis_module::decode_args(ctx, argv, argc);
    let result = run_command(&context, args, spec.handler);
    context.reply(result) as c_int
}

/// One entry point per table row, in the same order (the array lengths
/// are tied by `COMMAND_COUNT`).
const DISPATCH: [RawCommand; COMMAND_COUNT] = [
    dispatch::<0>,
    dispatch::<1>,
    dispatch::<2>,
    dispatch::<3>,
    dispatch::<4>,
    dispatch::<5>,
    dispatch::<6>,
    dispatch::<7>,
    dispatch::<8>,
    dispatch::<9>,
    dispatch::<10>,
    dispatch::<11>,
    dispatch::<12>,
];

/// The module's own ACL category, where the server can add one.
const MODULE_ACL_CATEGORY: &str = "campaign";

impl CommandSpec {
    pub fn registered(&self, ctx: &Context) -> bool {
        self.only_if.is_none_or(|holds| holds(ctx))
    }
}

/// Registers every command of the table (that applies on this server),
/// with its ACL categories where the server supports them.
pub fn register(ctx: &Context) -> Result<(), String> {
    let create = api!(RedisModule_CreateCommand)
        .ok_or_else(|| "RedisModule_CreateCommand is missing".to_string())?;
    let module_category = add_module_acl_category(ctx)?;
    for (spec, entry_point) in COMMANDS.iter().zip(DISPATCH) {
        if !spec.registered(ctx) {
            continue;
        }
        let name = CString::new(spec.name).expect("command names hold no NUL");
        let flags = CString::new(spec.flags).expect("command flags hold no NUL");
        let (first, last, step) = spec.keys;
        // SAFETY: called from OnLoad with its context; the strings live
        // through the call (Redis copies them).
        let status = unsafe {
            create(
                ctx.ctx,
                name.as_ptr(),
                Some(entry_point),
                flags.as_ptr(),
                first,
                last,
                step,
            )
        };
        if status != raw::REDISMODULE_OK as c_int {
            return Err(format!("cannot register {}", spec.name));
        }
        let categories = match module_category {
            Some(category) => format!("{} {category}", spec.acl),
            None => spec.acl.to_owned(),
        };
        set_acl_categories(ctx, &name, &categories)?;
    }
    Ok(())
}

/// Adds the `campaign` ACL category (Redis 7.4+); `None` where the server
/// cannot.
fn add_module_acl_category(ctx: &Context) -> Result<Option<&'static str>, String> {
    let Some(add_category) = api!(RedisModule_AddACLCategory) else {
        return Ok(None);
    };
    let name = CString::new(MODULE_ACL_CATEGORY).expect("no NUL");
    // SAFETY: called from OnLoad with its live context.
    if unsafe { add_category(ctx.ctx, name.as_ptr()) } != raw::REDISMODULE_OK as c_int {
        return Err(format!("cannot add the ACL category {MODULE_ACL_CATEGORY}"));
    }
    Ok(Some(MODULE_ACL_CATEGORY))
}

/// Declares the command's ACL categories (Redis 7.2+, Valkey); on older
/// servers module commands belong to no category (see the README).
fn set_acl_categories(ctx: &Context, name: &CString, categories: &str) -> Result<(), String> {
    let (Some(get_command), Some(set_categories)) = (
        api!(RedisModule_GetCommand),
        api!(RedisModule_SetCommandACLCategories),
    ) else {
        return Ok(());
    };
    let categories = CString::new(categories).expect("no NUL");
    // SAFETY: a live context and a command registered just before; Redis
    // copies the category list.
    let status = unsafe {
        let command = get_command(ctx.ctx, name.as_ptr());
        if command.is_null() {
            return Err(format!("command {name:?} is not registered"));
        }
        set_categories(command, categories.as_ptr())
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err(format!(
            "the server refused ACL categories '{categories:?}' for {name:?}"
        ));
    }
    Ok(())
}
