//! The `campaigns` native type: the callbacks Redis calls for persistence,
//! AOF rewrite, COPY, MEMORY USAGE and freeing a campaign value.

use std::ffi::CString;
use std::os::raw::{c_int, c_void};
use std::ptr;

use redis_module::native_types::RedisType;
use redis_module::{logging, raw};

use super::background_free;
use super::panic_guard::run_callback;
use crate::core::member_set::ENCODING_VERSION;
use crate::core::{DecodeError, MemberSet, RecordReader, RecordWriter};

/// Members per `CAMPAIGN.ADD` emitted by an AOF rewrite: large enough to keep
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
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
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
unsafe fn member_set<'a>(value: *const c_void) -> &'a MemberSet {
    &*value.cast::<MemberSet>()
}

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    run_callback("rdb_load", ptr::null_mut(), || {
        match MemberSet::decode(&mut RdbReader(rdb), encver) {
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
        member_set(value).encode(&mut RdbWriter(rdb))
    });
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    run_callback("aof_rewrite", (), || {
        let set = member_set(value);
        let members: Vec<&str> = set.iter().collect();
        for chunk in members.chunks(AOF_MEMBERS_PER_COMMAND) {
            emit_add(aof, key, chunk);
        }
    });
}

/// Emits `CAMPAIGN.ADD key member...` into the rewritten AOF.
unsafe fn emit_add(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    members: &[&str],
) {
    let (Some(create), Some(free), Some(emit)) = (
        raw::RedisModule_CreateString,
        raw::RedisModule_FreeString,
        raw::RedisModule_EmitAOF,
    ) else {
        return;
    };
    let mut argv: Vec<*mut raw::RedisModuleString> = members
        .iter()
        .map(|member| create(ptr::null_mut(), member.as_ptr().cast(), member.len()))
        .collect();
    let command = CString::new("CAMPAIGN.ADD").expect("static name");
    // "s" is the key, "v" an array of strings with its length.
    let format = CString::new("sv").expect("static format");
    emit(
        aof,
        command.as_ptr(),
        format.as_ptr(),
        key,
        argv.as_mut_ptr(),
        argv.len(),
    );
    for string in argv {
        free(ptr::null_mut(), string);
    }
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    run_callback("mem_usage", 0, || {
        std::mem::size_of::<MemberSet>() + member_set(value).heap_bytes()
    })
}

unsafe extern "C" fn free_effort(_key: *mut raw::RedisModuleString, value: *const c_void) -> usize {
    run_callback("free_effort", 1, || member_set(value).len().max(1))
}

unsafe extern "C" fn free(value: *mut c_void) {
    run_callback("free", (), || {
        background_free::release(Box::from_raw(value.cast::<MemberSet>()));
    });
}

unsafe extern "C" fn copy(
    _from_key: *mut raw::RedisModuleString,
    _to_key: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    run_callback("copy", ptr::null_mut(), || {
        Box::into_raw(Box::new(member_set(value).clone())).cast()
    })
}
