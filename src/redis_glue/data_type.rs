//! The `campaigns` native type: the callbacks Redis calls for persistence,
//! AOF rewrite, COPY, MEMORY USAGE and freeing a campaign value, and for
//! the module-wide journal (RDB aux data).

use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use redis_module::native_types::RedisType;
use redis_module::{logging, raw};

use super::background_free;
use super::panic_guard::run_callback;
use crate::core::member_set::{MemberRef, ENCODING_VERSION};
use crate::core::{Campaign, DecodeError, Journal, RecordReader, RecordWriter};
use crate::write_behind::{now_ms, WRITE_BEHIND};

/// Version of the journal's aux data, written first so it can evolve.
const JOURNAL_FORMAT: u64 = 1;

/// Members per `CAMPAIGN.SYNC ... ADD` emitted by an AOF rewrite: large enough to keep
/// the AOF compact, small enough to keep each replayed command cheap.
const AOF_MEMBERS_PER_COMMAND: usize = 512;

pub static CAMPAIGN_TYPE: RedisType = RedisType::new(
    // Redis requires exactly nine characters.
    "campaigns",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: None,
        free: Some(free),
        // The journal is module-wide data saved beside the keyspace.
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as c_int,
        free_effort: Some(free_effort),
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

/// Writes records into an RDB stream (also used by DUMP and replication).
struct RdbWriter(*mut raw::RedisModuleIO);

impl RecordWriter for RdbWriter {
    fn write_unsigned(&mut self, value: u64) {
        raw::save_unsigned(self.0, value);
    }
    fn write_bytes(&mut self, bytes: &[u8]) {
        raw::save_slice(self.0, bytes);
    }
}

/// Reads records from an RDB stream (also used by RESTORE and replication).
struct RdbReader(*mut raw::RedisModuleIO);

impl RecordReader for RdbReader {
    fn read_unsigned(&mut self) -> Result<u64, DecodeError> {
        raw::load_unsigned(self.0).map_err(|_| DecodeError::Truncated)
    }
    fn read_bytes<T>(&mut self, use_bytes: impl FnOnce(&[u8]) -> T) -> Result<T, DecodeError> {
        let buffer = raw::load_string_buffer(self.0).map_err(|_| DecodeError::Truncated)?;
        Ok(use_bytes(buffer.as_ref()))
    }
}

/// # Safety
/// Redis passes a live campaign value created by this module.
unsafe fn campaign<'a>(value: *const c_void) -> &'a Campaign {
    &*value.cast::<Campaign>()
}

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    run_callback("rdb_load", ptr::null_mut(), || {
        match Campaign::decode(&mut RdbReader(rdb), encver) {
            Ok(set) => Box::into_raw(Box::new(set)).cast(),
            Err(error) => {
                logging::log_warning(format!("campaign: cannot load a campaign: {error}"));
                ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    run_callback("rdb_save", (), || {
        campaign(value).encode(&mut RdbWriter(rdb))
    });
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    run_callback("aof_rewrite", (), || {
        emit_journal_once(aof);
        // Members come formatted on the fly (ids and UUIDs are stored as
        // numbers), so they are emitted as they come, a command at a time.
        let mut chunk = Vec::with_capacity(AOF_MEMBERS_PER_COMMAND);
        let emit_chunk = |chunk: &mut Vec<MemberRef>| {
            let words: Vec<&str> = chunk.iter().map(MemberRef::as_str).collect();
            emit_add(aof, key, &words);
            chunk.clear();
        };
        for member in campaign(value).members().iter() {
            chunk.push(member);
            if chunk.len() == AOF_MEMBERS_PER_COMMAND {
                emit_chunk(&mut chunk);
            }
        }
        if !chunk.is_empty() {
            emit_chunk(&mut chunk);
        }
    });
}

/// Emits `CAMPAIGN.SYNC key ADD member...` into the rewritten AOF: set
/// content, which replay must not journal (the journal comes separately).
unsafe fn emit_add(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    members: &[&str],
) {
    with_strings(members, |argv, count| {
        // "s" the key, "c" a C string, "v" an array of strings and its length.
        if let Some(emit) = raw::RedisModule_EmitAOF {
            let (command, format) = (c"CAMPAIGN.SYNC", c"scv");
            emit(
                aof,
                command.as_ptr(),
                format.as_ptr(),
                key,
                c"ADD".as_ptr(),
                argv,
                count,
            );
        }
    });
}

/// Pid of the rewrite child that already wrote the journal out.
static JOURNAL_EMITTED_BY: AtomicU32 = AtomicU32::new(0);

/// Without the RDB preamble an AOF rewrite has no place for module-wide
/// data, so the first campaign key rewritten also carries the journal as
/// `CAMPAIGN.JOURNAL LOAD` commands. (A rewrite child is a fresh process:
/// the pid tells whether this one did it already.)
unsafe fn emit_journal_once(aof: *mut raw::RedisModuleIO) {
    let pid = std::process::id();
    if JOURNAL_EMITTED_BY.swap(pid, Ordering::Relaxed) == pid {
        return;
    }
    let journal = WRITE_BEHIND.journal_in_callback();
    let entries: Vec<(u64, &crate::core::Entry)> = journal.iter().collect();
    for chunk in entries.chunks(AOF_MEMBERS_PER_COMMAND) {
        let words: Vec<&str> = chunk
            .iter()
            .flat_map(|(_, entry)| [entry.op.word(), &*entry.campaign, &*entry.member])
            .collect();
        let first = chunk[0].0 as std::os::raw::c_longlong;
        with_strings(&words, |argv, count| {
            // "c" a C string, "l" a long long, "v" an array of strings.
            if let Some(emit) = raw::RedisModule_EmitAOF {
                let (command, format) = (c"CAMPAIGN.JOURNAL", c"clv");
                emit(
                    aof,
                    command.as_ptr(),
                    format.as_ptr(),
                    c"LOAD".as_ptr(),
                    first,
                    argv,
                    count,
                );
            }
        });
    }
}

/// Runs `body` with `words` as an array of Redis strings, freed afterwards.
unsafe fn with_strings(words: &[&str], body: impl FnOnce(*mut *mut raw::RedisModuleString, usize)) {
    let (Some(create), Some(free)) = (raw::RedisModule_CreateString, raw::RedisModule_FreeString)
    else {
        return;
    };
    let mut argv: Vec<*mut raw::RedisModuleString> = words
        .iter()
        .map(|word| create(ptr::null_mut(), word.as_ptr().cast(), word.len()))
        .collect();
    body(argv.as_mut_ptr(), argv.len());
    for string in argv {
        free(ptr::null_mut(), string);
    }
}

unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return;
    }
    run_callback("aux_save", (), || {
        let mut writer = RdbWriter(rdb);
        writer.write_unsigned(JOURNAL_FORMAT);
        WRITE_BEHIND.journal_in_callback().encode(&mut writer);
    });
}

unsafe extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, _encver: c_int, when: c_int) -> c_int {
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return raw::REDISMODULE_OK as c_int;
    }
    run_callback("aux_load", raw::REDISMODULE_ERR as c_int, || {
        let mut reader = RdbReader(rdb);
        let loaded = reader.read_unsigned().and_then(|format| {
            if format != JOURNAL_FORMAT {
                return Err(DecodeError::UnknownVersion(format as i32));
            }
            Journal::decode(&mut reader, now_ms())
        });
        match loaded {
            Ok(journal) => {
                WRITE_BEHIND.replace_journal(journal);
                raw::REDISMODULE_OK as c_int
            }
            Err(error) => {
                logging::log_warning(format!("campaign: cannot load the journal: {error}"));
                raw::REDISMODULE_ERR as c_int
            }
        }
    })
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    run_callback("mem_usage", 0, || {
        std::mem::size_of::<Campaign>() + campaign(value).heap_bytes()
    })
}

unsafe extern "C" fn free_effort(_key: *mut raw::RedisModuleString, value: *const c_void) -> usize {
    run_callback("free_effort", 1, || campaign(value).len().max(1))
}

unsafe extern "C" fn free(value: *mut c_void) {
    run_callback("free", (), || {
        background_free::release(Box::from_raw(value.cast::<Campaign>()));
    });
}

unsafe extern "C" fn copy(
    _from_key: *mut raw::RedisModuleString,
    _to_key: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    run_callback("copy", ptr::null_mut(), || {
        Box::into_raw(Box::new(campaign(value).clone())).cast()
    })
}
