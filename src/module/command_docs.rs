//! `COMMAND INFO` / `COMMAND DOCS` text and key specs for every command of
//! the table, registered through `RedisModule_SetCommandInfo` (Redis 7.0+).

use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr;

use crate::redis_glue::ffi::api;
use redis_module::{raw, Context};

use super::command_table::CommandSpec;

const SINCE: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Copy)]
pub enum ArgKind {
    Key,
    Text,
    Integer,
}

pub struct ArgDoc {
    name: &'static str,
    kind: ArgKind,
    optional: bool,
    multiple: bool,
}

pub struct CommandDoc {
    pub summary: &'static str,
    pub complexity: &'static str,
    /// Redis convention: N exactly, -N at least N (counting the command name).
    pub arity: c_int,
    /// `REDISMODULE_CMD_KEY_*` flags of the one key (argument 1), if any.
    pub key_flags: Option<u32>,
    pub args: &'static [ArgDoc],
}

pub const fn arg(name: &'static str, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        name,
        kind,
        optional: false,
        multiple: false,
    }
}

pub const fn optional(name: &'static str, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        optional: true,
        ..arg(name, kind)
    }
}

pub const fn many(name: &'static str, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        multiple: true,
        ..arg(name, kind)
    }
}

pub const CAMPAIGN_AND_MEMBERS: &[ArgDoc] =
    &[arg("campaign", ArgKind::Key), many("member", ArgKind::Text)];

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

pub fn register(ctx: &Context, commands: &[CommandSpec]) -> Result<(), String> {
    let api = (
        api!(RedisModule_GetCommand),
        api!(RedisModule_SetCommandInfo),
    );
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
    for spec in commands.iter().filter(|spec| spec.registered(ctx)) {
        let doc = &spec.doc;
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
        let name = strings.keep(spec.name);
        // SAFETY: every pointer in `info` points into locals alive until the
        // call returns; Redis copies what it keeps.
        let status = unsafe {
            let command = get_command(ctx.ctx, name);
            if command.is_null() {
                return Err(format!("command {} is not registered", spec.name));
            }
            set_command_info(command, &info)
        };
        if status != raw::REDISMODULE_OK as c_int {
            return Err(format!("Redis refused the documentation of {}", spec.name));
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
