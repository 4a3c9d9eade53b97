//! TLS to PostgreSQL through OpenSSL (the library libpq uses), with
//! libpq's meaning of every parameter:
//!
//! - the server's chain is checked when `sslmode` is `verify-ca` or
//!   `verify-full`, and also under `require`/`prefer`/`allow` when a root
//!   certificate is there (`sslrootcert`, by default
//!   `~/.postgresql/root.crt`), as libpq does;
//! - the host name is checked (SAN, else CN; IP addresses too) only under
//!   `verify-full`;
//! - `sslrootcert=system` uses OpenSSL's trusted roots;
//! - a client certificate (`sslcert`, default `~/.postgresql/postgresql.crt`)
//!   is sent when its file exists, with `sslkey` (default
//!   `~/.postgresql/postgresql.key`), which must not be readable by group or
//!   others (0600; 0640 when owned by root), decrypted with `sslpassword`;
//! - SNI carries the host name unless `sslsni=0` (never an IP address);
//! - TLS 1.2 at least unless `ssl_min_protocol_version` says otherwise.
//!
//! Files are read at each new connection, so renewed certificates are used
//! without a restart. The same connector sends cancel requests.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509VerifyFlags;
use postgres_openssl::MakeTlsConnector;

use crate::redis_glue::conninfo::{SslMode, TlsParams};

/// The connector for `params`; an error names the file or setting at fault.
pub fn connector(params: &TlsParams) -> Result<MakeTlsConnector, String> {
    fn openssl(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> String {
        move |error| format!("{what}: {error}")
    }
    let mut builder =
        SslConnector::builder(SslMethod::tls_client()).map_err(openssl("TLS set-up"))?;
    let mut verify = false;
    if params.mode != SslMode::Disable {
        builder
            .set_min_proto_version(Some(version(
                params.min_protocol.as_deref(),
                SslVersion::TLS1_2,
            )))
            .map_err(openssl("ssl_min_protocol_version"))?;
        if let Some(max) = params.max_protocol.as_deref() {
            builder
                .set_max_proto_version(Some(version(Some(max), SslVersion::TLS1_3)))
                .map_err(openssl("ssl_max_protocol_version"))?;
        }
        verify = load_roots(&mut builder, params)?;
        if verify {
            load_crl(&mut builder, params)?;
        }
        load_client_certificate(&mut builder, params)?;
        postgres_openssl::set_postgresql_alpn(&mut builder).map_err(openssl("ALPN"))?;
    }
    builder.set_verify(if verify {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    let mut connector = MakeTlsConnector::new(builder.build());
    let check_host = params.mode == SslMode::VerifyFull;
    let sni = params.sni;
    connector.set_callback(move |config, _domain| {
        config.set_verify_hostname(check_host);
        config.set_use_server_name_indication(sni);
        Ok(())
    });
    Ok(connector)
}

fn version(word: Option<&str>, default: SslVersion) -> SslVersion {
    match word {
        Some("TLSv1") => SslVersion::TLS1,
        Some("TLSv1.1") => SslVersion::TLS1_1,
        Some("TLSv1.2") => SslVersion::TLS1_2,
        Some("TLSv1.3") => SslVersion::TLS1_3,
        _ => default,
    }
}

/// The file under `~/.postgresql/` libpq looks at by default.
fn default_file(name: &str) -> Option<PathBuf> {
    super::passfile::home_dir().map(|home| home.join(".postgresql").join(name))
}

/// Loads the trusted roots; whether the server's chain is then checked.
fn load_roots(
    builder: &mut openssl::ssl::SslConnectorBuilder,
    params: &TlsParams,
) -> Result<bool, String> {
    if params.root_cert.as_deref() == Some("system") {
        builder
            .set_default_verify_paths()
            .map_err(|error| format!("sslrootcert=system: {error}"))?;
        return Ok(true);
    }
    let path = match &params.root_cert {
        Some(path) => Some(PathBuf::from(path)),
        None => default_file("root.crt"),
    };
    match path.filter(|path| path.exists()) {
        Some(path) => {
            builder
                .set_ca_file(&path)
                .map_err(|error| format!("sslrootcert \"{}\": {error}", path.display()))?;
            Ok(true)
        }
        None if params.mode.verifies() => Err(format!(
            "sslmode={}: root certificate file \"{}\" does not exist; either provide the \
             file, use the system's trusted roots with sslrootcert=system, or change sslmode \
             to disable server certificate verification",
            params.mode.word(),
            params
                .root_cert
                .clone()
                .unwrap_or_else(|| "~/.postgresql/root.crt".into())
        )),
        None => Ok(false),
    }
}

fn load_crl(
    builder: &mut openssl::ssl::SslConnectorBuilder,
    params: &TlsParams,
) -> Result<(), String> {
    let path = match &params.crl {
        Some(path) => PathBuf::from(path),
        None => match default_file("root.crl") {
            Some(path) if path.exists() => path,
            _ => return Ok(()),
        },
    };
    let failed =
        |error: openssl::error::ErrorStack| format!("sslcrl \"{}\": {error}", path.display());
    let store = builder.cert_store_mut();
    let lookup = store.add_lookup(X509Lookup::file()).map_err(failed)?;
    lookup
        .load_crl_file(&path, SslFiletype::PEM)
        .map_err(failed)?;
    store
        .set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)
        .map_err(failed)
}

fn load_client_certificate(
    builder: &mut openssl::ssl::SslConnectorBuilder,
    params: &TlsParams,
) -> Result<(), String> {
    let cert = match &params.cert {
        Some(path) => Some(PathBuf::from(path)),
        None => default_file("postgresql.crt"),
    };
    // As libpq: without the certificate file, no client certificate.
    let Some(cert) = cert.filter(|path| path.exists()) else {
        return Ok(());
    };
    builder
        .set_certificate_chain_file(&cert)
        .map_err(|error| format!("sslcert \"{}\": {error}", cert.display()))?;
    let key = match &params.key {
        Some(path) => PathBuf::from(path),
        None => default_file("postgresql.key").unwrap_or_default(),
    };
    let failed = |text: String| format!("sslkey \"{}\": {text}", key.display());
    let metadata = fs::metadata(&key).map_err(|error| failed(error.to_string()))?;
    key_permissions_ok(&metadata).map_err(failed)?;
    let pem = fs::read(&key).map_err(|error| failed(error.to_string()))?;
    let private = match &params.key_password {
        Some(password) => PKey::private_key_from_pem_passphrase(&pem, password.as_bytes()),
        None => PKey::private_key_from_pem(&pem),
    }
    .map_err(|error| failed(format!("cannot load the private key: {error}")))?;
    builder
        .set_private_key(&private)
        .map_err(|error| failed(error.to_string()))?;
    builder
        .check_private_key()
        .map_err(|_| failed(format!("does not match sslcert \"{}\"", cert.display())))
}

/// libpq's rule for private key files.
fn key_permissions_ok(metadata: &fs::Metadata) -> Result<(), String> {
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    let mode = metadata.mode();
    // SAFETY: geteuid cannot fail.
    let mine = metadata.uid() == unsafe { libc::geteuid() };
    let bad = (mine && mode & 0o077 != 0) || (metadata.uid() == 0 && mode & 0o037 != 0);
    if !bad {
        return Ok(());
    }
    Err(format!(
        "private key file has group or world access (mode {:o}); file must have \
         permissions u=rw (0600) or less if owned by the current user, or permissions \
         u=rw,g=r (0640) or less if owned by root",
        mode & 0o777
    ))
}
