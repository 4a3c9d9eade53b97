//! libpq's password file (`passfile`, by default `~/.pgpass`): lines of
//! `hostname:port:database:username:password`, `*` matching anything,
//! `\` escaping `:` and `\`, `#` starting a comment line. The first line
//! that matches gives the password. As libpq, the file is ignored unless it
//! is a plain file without group or world access (0600 or less); a file
//! named in the URL that cannot be used is an error (libpq only warns on
//! stderr, which nobody reads in a module), the default one is skipped.
//! Read at every new connection: a rotated password needs no CONFIG SET.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::redis_glue::conninfo::{HostEntry, DEFAULT_SOCKET_DIR};

/// The password for `host`, `dbname` and `user`, from `explicit` (the
/// URL's `passfile`) or `~/.pgpass`.
pub fn lookup(
    explicit: Option<&str>,
    host: &HostEntry,
    dbname: &str,
    user: &str,
) -> Result<Option<String>, String> {
    let path = match explicit {
        Some(path) => PathBuf::from(path),
        None => match home_dir() {
            Some(home) => home.join(".pgpass"),
            None => return Ok(None),
        },
    };
    let failed = |text: String| format!("passfile \"{}\": {text}", path.display());
    let metadata = match fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(_) if explicit.is_none() => return Ok(None),
        Err(error) => return Err(failed(error.to_string())),
    };
    let refusal = if !metadata.is_file() {
        Some("password file is not a plain file".to_owned())
    } else if metadata.permissions().mode() & 0o077 != 0 {
        Some(format!(
            "password file has group or world access (mode {:o}); permissions should be \
             u=rw (0600) or less",
            metadata.permissions().mode() & 0o777
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        return if explicit.is_some() {
            Err(failed(refusal))
        } else {
            Ok(None)
        };
    }
    let contents = fs::read_to_string(&path).map_err(|error| failed(error.to_string()))?;
    let name = match (&host.host, host.hostaddr) {
        (name, _) if name == DEFAULT_SOCKET_DIR => "localhost".to_owned(),
        (name, Some(address)) if name.is_empty() => address.to_string(),
        (name, _) if name.is_empty() => "localhost".to_owned(),
        (name, _) => name.clone(),
    };
    Ok(find(&contents, &name, &host.port.to_string(), dbname, user))
}

/// The first matching line's password.
pub fn find(contents: &str, host: &str, port: &str, dbname: &str, user: &str) -> Option<String> {
    contents
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split_fields(line.trim_end_matches('\r'));
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = |field: &String, value: &str| field == "*" || field == value;
            (matches(h, host) && matches(p, port) && matches(d, dbname) && matches(u, user))
                .then(|| password.clone())
        })
}

/// Splits a line at unescaped `:` into at most five fields (the password
/// takes the rest), removing the escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().unwrap().extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The home directory of the user the server runs as (`HOME`, else the
/// password database).
pub fn home_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        return Some(PathBuf::from(home));
    }
    user_entry().map(|(_, home)| home)
}

/// The OS user name, libpq's default `user`.
pub fn os_user() -> Option<String> {
    user_entry().map(|(name, _)| name)
}

fn user_entry() -> Option<(String, PathBuf)> {
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the strings read after
    // it live in `buffer`.
    let status = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r filled these with NUL-terminated strings.
    let text = |pointer: *const libc::c_char| unsafe {
        std::ffi::CStr::from_ptr(pointer)
            .to_string_lossy()
            .into_owned()
    };
    Some((text(entry.pw_name), PathBuf::from(text(entry.pw_dir))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_line_wins() {
        let file = "# comment\n\
                    db:5432:other:app:no\n\
                    db:5432:*:app:first\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            find(file, "db", "5432", "x", "app").as_deref(),
            Some("first")
        );
        assert_eq!(
            find(file, "db", "5433", "x", "app").as_deref(),
            Some("fallback")
        );
        assert_eq!(find("db:5432:x:app:pw", "db", "5432", "x", "bob"), None);
    }

    #[test]
    fn escapes_and_colons_in_the_password() {
        let file = r"h\:1:5432:d:u:pa\:ss:with\\colon:more";
        assert_eq!(
            find(file, "h:1", "5432", "d", "u").as_deref(),
            Some(r"pa:ss:with\colon:more")
        );
        assert_eq!(find("h:5432:d:u", "h", "5432", "d", "u"), None);
    }

    #[test]
    fn permission_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let host = HostEntry {
            host: "db".into(),
            hostaddr: None,
            port: 5432,
        };
        let name = path.to_str().unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = lookup(Some(name), &host, "d", "u").unwrap_err();
        assert!(error.contains("0600"), "{error}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            lookup(Some(name), &host, "d", "u").unwrap().as_deref(),
            Some("secret")
        );
        let missing = dir.path().join("none");
        assert!(lookup(missing.to_str(), &host, "d", "u").is_err());
    }
}
