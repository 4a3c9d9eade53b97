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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openssl::error::ErrorStack;
use postgres_openssl::{MakeTlsConnector, TlsConnector, TlsStream};
use tokio_postgres::config::{LoadBalanceHosts, SslMode as PgSslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Connection, Socket};

use super::passfile;
use super::postgres::error_chain;
use super::SinkError;
use crate::redis_glue::conninfo::{ConnInfo, HostEntry, SslMode};

pub type PgConnection = Connection<Socket, TlsStream<Socket>>;

/// A connection to the first host that takes it; the error tells each
/// host's reason.
pub async fn open(
    info: &ConnInfo,
    tls: &MakeTlsConnector,
) -> Result<(Client, PgConnection), String> {
    let mut hosts: Vec<&HostEntry> = info.hosts.iter().collect();
    if info.base.get_load_balance_hosts() == LoadBalanceHosts::Random {
        fastrand::shuffle(&mut hosts);
    }
    let mut reasons = Vec::new();
    for host in hosts {
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
    let (first, second) = match mode {
        _ if host.is_socket() => (PgSslMode::Disable, None),
        SslMode::Disable => (PgSslMode::Disable, None),
        SslMode::Allow => (PgSslMode::Disable, Some(PgSslMode::Require)),
        // tokio-postgres's prefer: plaintext on the same socket when the
        // server answers that it has no TLS.
        SslMode::Prefer => (PgSslMode::Prefer, Some(PgSslMode::Disable)),
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => (PgSslMode::Require, None),
    };
    let attempt = async |ssl_mode: PgSslMode| {
        let mut config = info.config_for(host, ssl_mode, password.as_deref());
        if config.get_user().is_none() {
            config.user(&user);
        }
        let flagged = Flagged::new(tls.clone());
        let used = flagged.used.clone();
        let result = config.connect(flagged).await;
        result.map_err(|error| (error, used.load(Ordering::Relaxed)))
    };
    let (error, tls_used) = match attempt(first).await {
        Ok(opened) => return Ok(opened),
        Err(failed) => failed,
    };
    let how = |tls_used: bool| if tls_used { "TLS" } else { "plaintext" };
    let first_reason = format!("{}: {}", how(tls_used), explain(&error_chain(&error)));
    // As libpq: allow retries with TLS after the server refused the
    // plaintext attempt; prefer retries in plaintext after a failed
    // handshake or a refusal of the TLS attempt. A host that cannot be
    // reached is not tried again.
    let unreachable =
        error.to_string().starts_with("error connecting to server") || error.is_closed();
    let retry = match (mode, second) {
        (SslMode::Allow, Some(next)) if !unreachable && error.as_db_error().is_some() => Some(next),
        (SslMode::Prefer, Some(next)) if !unreachable && tls_used => Some(next),
        _ => None,
    };
    let Some(next) = retry else {
        return Err(fail(first_reason));
    };
    match attempt(next).await {
        Ok(opened) => Ok(opened),
        Err((error, tls_used)) => Err(fail(format!(
            "{first_reason}, then {}: {}",
            how(tls_used),
            explain(&error_chain(&error))
        ))),
    }
}

/// The TLS connector, noting whether the server agreed to TLS (the
/// handshake was started).
struct Flagged {
    inner: MakeTlsConnector,
    used: Arc<AtomicBool>,
}

impl Flagged {
    fn new(inner: MakeTlsConnector) -> Self {
        Flagged {
            inner,
            used: Arc::new(AtomicBool::new(false)),
        }
    }
}

struct FlaggedConnect {
    inner: TlsConnector,
    used: Arc<AtomicBool>,
}

impl MakeTlsConnect<Socket> for Flagged {
    type Stream = TlsStream<Socket>;
    type TlsConnect = FlaggedConnect;
    type Error = ErrorStack;

    fn make_tls_connect(&mut self, domain: &str) -> Result<FlaggedConnect, ErrorStack> {
        let inner = <MakeTlsConnector as MakeTlsConnect<Socket>>::make_tls_connect(
            &mut self.inner,
            domain,
        )?;
        Ok(FlaggedConnect {
            inner,
            used: self.used.clone(),
        })
    }
}

type Handshake = Pin<
    Box<
        dyn Future<Output = Result<TlsStream<Socket>, Box<dyn std::error::Error + Send + Sync>>>
            + Send,
    >,
>;

impl TlsConnect<Socket> for FlaggedConnect {
    type Stream = TlsStream<Socket>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Handshake;

    fn connect(self, stream: Socket) -> Handshake {
        self.used.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
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

/// An error of the connection itself (closed, reset, broken pipe), not an
/// answer of the server.
pub(super) fn error_is_connection(error: &tokio_postgres::Error) -> bool {
    let text = error_chain(error);
    error.is_closed()
        || [
            "connection closed",
            "broken pipe",
            "reset by peer",
            "unexpected EOF",
        ]
        .iter()
        .any(|sign| text.contains(sign))
}

/// The connection settings of `url` (libpq's meaning, see `conninfo`):
/// the URL's own parameters are kept; a connect timeout, keepalives and an
/// application name are added only where the URL sets none.
pub(super) fn session_config(url: &str) -> Result<ConnInfo, SinkError> {
    let mut info = ConnInfo::parse(url).map_err(SinkError::Connect)?;
    let settings = &mut info.base;
    if settings.get_connect_timeout().is_none() {
        settings.connect_timeout(Duration::from_secs(5));
    }
    if settings.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        settings.keepalives_idle(Duration::from_secs(30));
    }
    if settings.get_application_name().is_none() {
        settings.application_name("redis-campaign");
    }
    Ok(info)
}
