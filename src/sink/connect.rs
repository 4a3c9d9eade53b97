//! Opening one connection as libpq does: each host of the list in turn
//! (its own password from the password file, its own name for TLS and
//! SNI), `target_session_attrs` checked on each, and per `sslmode`:
//!
//! - `disable`: plaintext only;
//! - `allow`: plaintext, then TLS if the server refused the first attempt;
//! - `prefer`: TLS, then plaintext if the server has no TLS, the handshake
//!   failed, or the server refused the TLS attempt;
//! - `require`, `verify-ca`, `verify-full`: TLS only (checks in `tls`).
//!
//! TLS is never tried over a Unix-domain socket (libpq neither).

use postgres_openssl::{MakeTlsConnector, TlsStream};
use tokio_postgres::{Client, Connection, Socket};

use super::passfile;
use super::postgres::error_chain;
use crate::redis_glue::conninfo::{ConnInfo, HostEntry, SslMode};

pub type PgConnection = Connection<Socket, TlsStream<Socket>>;

/// A connection to the first host that takes it; the error tells each
/// host's reason.
pub async fn open(
    info: &ConnInfo,
    tls: &MakeTlsConnector,
) -> Result<(Client, PgConnection), String> {
    let mut reasons = Vec::new();
    for host in &info.hosts {
        match open_host(info, host, tls).await {
            Ok(opened) => return Ok(opened),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(reasons.join("; "))
}

async fn open_host(
    info: &ConnInfo,
    host: &HostEntry,
    tls: &MakeTlsConnector,
) -> Result<(Client, PgConnection), String> {
    let place = match (&host.host, host.hostaddr) {
        (name, Some(address)) if name.is_empty() => format!("{address}:{}", host.port),
        (name, _) => format!("{name}:{}", host.port),
    };
    let mode = info.tls.mode;
    let fail = |text: String| format!("{place} (sslmode={}): {text}", mode.word());
    let user = info
        .base
        .get_user()
        .map(str::to_owned)
        .or_else(passfile::os_user)
        .ok_or_else(|| fail("no user name given and none found for this process".into()))?;
    let password = match &info.password {
        Some(password) => Some(password.clone()),
        None => {
            let dbname = info.base.get_dbname().unwrap_or(&user);
            passfile::lookup(info.passfile.as_deref(), host, dbname, &user).map_err(fail)?
        }
    };
    let attempts: &[bool] = match mode {
        _ if host.is_socket() => &[false],
        SslMode::Disable => &[false],
        SslMode::Allow => &[false, true],
        SslMode::Prefer => &[true, false],
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => &[true],
    };
    let mut reasons = Vec::new();
    for (index, &use_tls) in attempts.iter().enumerate() {
        let mut config = info.config_for(host, use_tls, password.as_deref());
        if config.get_user().is_none() {
            config.user(&user);
        }
        match config.connect(tls.clone()).await {
            Ok(opened) => return Ok(opened),
            Err(error) => {
                let unreachable = error.to_string().starts_with("error connecting to server")
                    || error.is_closed();
                let how = if use_tls { "TLS" } else { "plaintext" };
                reasons.push(format!("{how}: {}", explain(&error_chain(&error))));
                // A host that cannot be reached is not tried again.
                if unreachable || index + 1 == attempts.len() {
                    break;
                }
            }
        }
    }
    Err(fail(reasons.join(", then ")))
}

/// OpenSSL's words, with what they mean for the operator.
fn explain(text: &str) -> String {
    let hint = if text.contains("hostname mismatch") || text.contains("IP address mismatch") {
        " (the server's certificate is not for this host name: connect by a name the \
         certificate lists, or use sslmode=verify-ca)"
    } else if text.contains("unable to get local issuer certificate")
        || text.contains("self-signed certificate")
        || text.contains("self signed certificate")
        || text.contains("unable to verify the first certificate")
    {
        " (the server's certificate is not signed by a CA of sslrootcert)"
    } else if text.contains("certificate has expired") {
        " (the server's certificate has expired)"
    } else {
        ""
    };
    format!("{text}{hint}")
}
