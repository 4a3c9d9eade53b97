//! `campaign.database-url` read as libpq reads a connection string: the
//! `key=value` form and the `postgresql://` URL form, with the parameters
//! tokio-postgres does not know (`sslmode` `allow`/`verify-ca`/
//! `verify-full`, `sslrootcert`, `sslcert`, `sslkey`, `sslpassword`,
//! `sslsni`, `ssl_min_protocol_version`, `passfile`, ...) taken out here and
//! the rest handed to `tokio_postgres::Config`.
//!
//! It lives beside the settings (not in `sink`, which connects with it)
//! because the setting's validation needs it and `sink` is a layer above.
//! Pure: no file is read here (`sink::passfile`, `sink::tls` do that).

use std::str::FromStr;

use tokio_postgres::config::{Config, SslMode as PgSslMode};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Plaintext first; TLS when the server refuses it.
    Allow,
    /// TLS first (unverified unless a root certificate is there);
    /// plaintext when the server has none or the TLS attempt fails.
    Prefer,
    Require,
    /// TLS, the server's chain checked against `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the host name against the certificate.
    VerifyFull,
}

impl SslMode {
    pub fn word(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(word: &str) -> Result<Self, String> {
        Ok(match word {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(format!("invalid sslmode value: \"{word}\"")),
        })
    }

    /// The server's certificate must be checked whatever files exist.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The TLS parameters, as given (files are found and read at connect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    /// `sslrootcert`: a file, or `system` for the system's trusted roots.
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub key_password: Option<String>,
    pub crl: Option<String>,
    /// `sslsni` (default on): the host name sent in the handshake.
    pub sni: bool,
    /// `ssl_min_protocol_version` (libpq's default TLSv1.2) and max.
    pub min_protocol: Option<String>,
    pub max_protocol: Option<String>,
}

/// One host of the list, as libpq pairs `host`, `hostaddr` and `port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    /// The name (or socket directory) used for TLS checks and the
    /// password file; empty when only `hostaddr` was given.
    pub host: String,
    pub hostaddr: Option<std::net::IpAddr>,
    pub port: u16,
}

impl HostEntry {
    /// A Unix-domain socket directory rather than a TCP host.
    pub fn is_socket(&self) -> bool {
        self.hostaddr.is_none() && self.host.starts_with('/')
    }
}

/// A parsed connection string.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Everything tokio-postgres reads itself (user, dbname, options,
    /// timeouts, `channel_binding`, `target_session_attrs`, ...), without
    /// hosts, ports, password or TLS.
    pub base: Config,
    pub hosts: Vec<HostEntry>,
    pub password: Option<String>,
    pub passfile: Option<String>,
    pub tls: TlsParams,
}

/// The socket directory libpq uses without a host (Debian's build).
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

impl ConnInfo {
    pub fn parse(text: &str) -> Result<Self, String> {
        let pairs = if let Some(rest) = strip_scheme(text) {
            parse_url(rest)?
        } else {
            parse_key_values(text)?
        };
        Self::from_pairs(pairs)
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, String> {
        let mut rest = String::new();
        let mut hosts = None;
        let mut hostaddrs = None;
        let mut ports = None;
        let mut password = None;
        let mut passfile = None;
        let mut fallback_name = None;
        let mut tls = TlsParams {
            mode: SslMode::Prefer,
            root_cert: None,
            cert: None,
            key: None,
            key_password: None,
            crl: None,
            sni: true,
            min_protocol: None,
            max_protocol: None,
        };
        // A later value of the same key wins, as in libpq.
        for (key, value) in pairs {
            let set = Some(value.clone());
            match key.as_str() {
                "host" => hosts = set,
                "hostaddr" => hostaddrs = set,
                "port" => ports = set,
                "password" => password = set,
                "passfile" => passfile = set,
                "sslmode" => tls.mode = SslMode::parse(&value)?,
                // URL shorthand (JDBC style) that libpq maps the same way.
                "ssl" if value == "true" => tls.mode = SslMode::Require,
                "requiressl" => {
                    if value == "1" {
                        tls.mode = SslMode::Require
                    }
                }
                "sslrootcert" => tls.root_cert = set,
                "sslcert" => tls.cert = set,
                "sslkey" => tls.key = set,
                "sslpassword" => tls.key_password = set,
                "sslcrl" => tls.crl = set,
                "sslsni" => tls.sni = parse_flag("sslsni", &value)?,
                "ssl_min_protocol_version" => tls.min_protocol = Some(protocol(&value)?),
                "ssl_max_protocol_version" => tls.max_protocol = Some(protocol(&value)?),
                // No GSSAPI here: "prefer" (libpq's default) means TLS or
                // plaintext, as without GSSAPI support in libpq.
                "gssencmode" if value == "disable" || value == "prefer" => {}
                "gssencmode" => {
                    return Err("gssencmode=require: GSSAPI encryption is not supported".into())
                }
                // Ignored by libpq since PostgreSQL 14.
                "sslcompression" => {}
                "fallback_application_name" => fallback_name = set,
                _ => {
                    rest.push_str(&key);
                    rest.push('=');
                    rest.push_str(&quote(&value));
                    rest.push(' ');
                }
            }
        }
        let mut base = Config::from_str(rest.trim_end()).map_err(|error| error.to_string())?;
        if base.get_application_name().is_none() {
            if let Some(name) = fallback_name {
                base.application_name(name);
            }
        }
        if tls.root_cert.as_deref() == Some("system") && tls.mode != SslMode::VerifyFull {
            return Err(format!(
                "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                tls.mode.word()
            ));
        }
        let hosts = host_list(hosts.as_deref(), hostaddrs.as_deref(), ports.as_deref())?;
        Ok(ConnInfo {
            base,
            hosts,
            password,
            passfile,
            tls,
        })
    }

    /// The settings tokio-postgres connects to `host` with, under its
    /// `ssl_mode` (the certificate checks are the TLS connector's).
    pub fn config_for(
        &self,
        host: &HostEntry,
        ssl_mode: PgSslMode,
        password: Option<&str>,
    ) -> Config {
        let mut config = self.base.clone();
        if host.host.is_empty() {
            if let Some(address) = host.hostaddr {
                config.host(address.to_string());
            }
        } else {
            config.host(&host.host);
        }
        if let Some(address) = host.hostaddr {
            config.hostaddr(address);
        }
        config.port(host.port);
        config.ssl_mode(ssl_mode);
        if let Some(password) = password {
            config.password(password);
        }
        config
    }
}

fn parse_flag(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(format!("invalid {key} value: \"{value}\" (0 or 1)")),
    }
}

fn protocol(value: &str) -> Result<String, String> {
    match value {
        "TLSv1" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3" => Ok(value.to_owned()),
        _ => Err(format!("invalid TLS protocol version: \"{value}\"")),
    }
}

/// libpq's host, hostaddr and port lists paired up; a single port applies
/// to every host, an empty entry means the default.
fn host_list(
    hosts: Option<&str>,
    hostaddrs: Option<&str>,
    ports: Option<&str>,
) -> Result<Vec<HostEntry>, String> {
    let split = |list: Option<&str>| -> Vec<String> {
        list.filter(|text| !text.is_empty())
            .map(|text| text.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    };
    let names = split(hosts);
    let addresses = split(hostaddrs);
    let ports = split(ports);
    if !names.is_empty() && !addresses.is_empty() && names.len() != addresses.len() {
        return Err(format!(
            "could not match {} host names to {} hostaddr values",
            names.len(),
            addresses.len()
        ));
    }
    let count = names.len().max(addresses.len()).max(1);
    if ports.len() > 1 && ports.len() != count {
        return Err(format!(
            "could not match {} port numbers to {count} hosts",
            ports.len()
        ));
    }
    (0..count)
        .map(|i| {
            let hostaddr = match addresses.get(i).filter(|a| !a.is_empty()) {
                Some(address) => Some(
                    address
                        .parse()
                        .map_err(|_| format!("invalid hostaddr \"{address}\""))?,
                ),
                None => None,
            };
            let mut host = names.get(i).cloned().unwrap_or_default();
            if host.is_empty() && hostaddr.is_none() {
                host = DEFAULT_SOCKET_DIR.to_owned();
            }
            let port = match ports.get(i).or(ports.first()).filter(|p| !p.is_empty()) {
                Some(port) => port
                    .parse::<u16>()
                    .ok()
                    .filter(|port| *port > 0)
                    .ok_or_else(|| format!("invalid port number: \"{port}\""))?,
                None => 5432,
            };
            Ok(HostEntry {
                host,
                hostaddr,
                port,
            })
        })
        .collect()
}

/// A value quoted for tokio-postgres's `key=value` parser.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

fn strip_scheme(text: &str) -> Option<&str> {
    text.strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
}

/// libpq's `key = value ...` form: values may be single-quoted, and a
/// backslash escapes the next character.
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after \"{key}\" in connection info string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err("unterminated quoted string in connection info string".into())
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// libpq's URL form after the scheme:
/// `[user[:password]@][host[:port][,...]][/dbname][?key=value[&...]]`.
fn parse_url(rest: &str) -> Result<Vec<(String, String)>, String> {
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, dbname) = match before_query.split_once('/') {
        Some((authority, dbname)) => (authority, Some(dbname)),
        None => (before_query, None),
    };
    let mut pairs = Vec::new();
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), decode(user)?));
            }
            if let Some(password) = password {
                pairs.push(("password".to_owned(), decode(password)?));
            }
            hostspec
        }
        None => authority,
    };
    if !hostspec.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for entry in hostspec.split(',') {
            let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| {
                    format!("missing \"]\" in IPv6 host address in URI: \"{entry}\"")
                })?;
                let port = match after {
                    "" => "",
                    _ => after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("unexpected \"{after}\" after IPv6 host address"))?,
                };
                (host.to_owned(), port)
            } else {
                match entry.split_once(':') {
                    Some((host, port)) => (decode(host)?, port),
                    None => (decode(entry)?, ""),
                }
            };
            hosts.push(host);
            ports.push(port.to_owned());
        }
        pairs.push(("host".to_owned(), hosts.join(",")));
        if ports.iter().any(|port| !port.is_empty()) {
            pairs.push(("port".to_owned(), ports.join(",")));
        }
    }
    if let Some(dbname) = dbname.filter(|name| !name.is_empty()) {
        pairs.push(("dbname".to_owned(), decode(dbname)?));
    }
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').ok_or_else(|| {
            format!("missing key/value separator \"=\" in URI query parameter: \"{param}\"")
        })?;
        pairs.push((decode(key)?, decode(value)?));
    }
    Ok(pairs)
}

/// Percent-decoding (`%2F`); the result must be UTF-8.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("invalid percent-encoded token in URI")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded URI value is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(info: &ConnInfo) -> Vec<(String, u16)> {
        info.hosts
            .iter()
            .map(|h| (h.host.clone(), h.port))
            .collect()
    }

    #[test]
    fn key_value_form_with_libpq_only_parameters() {
        let info = ConnInfo::parse(
            "host=db.example.com port=6543 user=app dbname='my db' sslmode=verify-full \
             sslrootcert=/etc/ca.pem sslcert=/c.pem sslkey='/k ey.pem' passfile=/p \
             channel_binding=require target_session_attrs=read-write sslsni=0",
        )
        .unwrap();
        assert_eq!(hosts(&info), [("db.example.com".to_owned(), 6543)]);
        assert_eq!(info.base.get_user(), Some("app"));
        assert_eq!(info.base.get_dbname(), Some("my db"));
        assert_eq!(info.tls.mode, SslMode::VerifyFull);
        assert_eq!(info.tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(info.tls.key.as_deref(), Some("/k ey.pem"));
        assert_eq!(info.passfile.as_deref(), Some("/p"));
        assert!(!info.tls.sni);
        assert_eq!(
            info.base.get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
        assert_eq!(info.password, None);
    }

    #[test]
    fn url_form() {
        let info = ConnInfo::parse(
            "postgresql://us%40er:p%3Ass@h1:5433,h2,[::1]:5435/d%20b?sslmode=verify-ca\
             &sslrootcert=%2Fca.pem&target_session_attrs=read-write&application_name=x",
        )
        .unwrap();
        assert_eq!(
            hosts(&info),
            [
                ("h1".to_owned(), 5433),
                ("h2".to_owned(), 5432),
                ("::1".to_owned(), 5435)
            ]
        );
        assert_eq!(info.base.get_user(), Some("us@er"));
        assert_eq!(info.password.as_deref(), Some("p:ss"));
        assert_eq!(info.base.get_dbname(), Some("d b"));
        assert_eq!(info.tls.mode, SslMode::VerifyCa);
        assert_eq!(info.tls.root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(info.base.get_application_name(), Some("x"));
    }

    #[test]
    fn defaults_as_libpq() {
        let info = ConnInfo::parse("postgres:///db").unwrap();
        assert_eq!(hosts(&info), [(DEFAULT_SOCKET_DIR.to_owned(), 5432)]);
        assert_eq!(info.tls.mode, SslMode::Prefer);
        assert!(info.tls.sni);
        let info = ConnInfo::parse("host=a,b port=1").unwrap();
        assert_eq!(hosts(&info), [("a".to_owned(), 1), ("b".to_owned(), 1)]);
        let info = ConnInfo::parse("hostaddr=10.0.0.1 port=7").unwrap();
        assert_eq!(info.hosts[0].host, "");
        assert_eq!(info.hosts[0].hostaddr, Some("10.0.0.1".parse().unwrap()));
        let info = ConnInfo::parse("host=x fallback_application_name=f").unwrap();
        assert_eq!(info.base.get_application_name(), Some("f"));
        let info = ConnInfo::parse("postgresql://x/db?ssl=true").unwrap();
        assert_eq!(info.tls.mode, SslMode::Require);
    }

    #[test]
    fn every_sslmode() {
        for (word, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let info = ConnInfo::parse(&format!("host=h sslmode={word}")).unwrap();
            assert_eq!(info.tls.mode, mode);
            assert_eq!(mode.word(), word);
        }
    }

    #[test]
    fn refusals() {
        for bad in [
            "host=h sslmode=bogus",
            "host=h bogus_option=1",
            "host=h sslrootcert=system sslmode=require",
            "host=h port=notaport",
            "host=a,b port=1,2,3",
            "host=h sslsni=yes",
            "host=h gssencmode=require",
            "host=h dbname='unterminated",
            "host=h dbname",
            "postgresql://h/db?sslmode",
            "postgresql://[::1/db",
            "postgresql://h/%zz",
            "host=h ssl_min_protocol_version=SSLv3",
            "host=h hostaddr=not-an-ip",
        ] {
            assert!(ConnInfo::parse(bad).is_err(), "{bad}");
        }
        assert!(ConnInfo::parse("host=h sslrootcert=system sslmode=verify-full").is_ok());
    }

    #[test]
    fn quoting_and_escapes() {
        let info = ConnInfo::parse(r"host=h password='it\'s a \\ pass' user=a\ b").unwrap();
        assert_eq!(info.password.as_deref(), Some(r"it's a \ pass"));
        assert_eq!(info.base.get_user(), Some("a b"));
        let info = ConnInfo::parse(r"host=h options='-c search_path=x\'y'").unwrap();
        assert_eq!(info.base.get_options(), Some("-c search_path=x'y"));
    }

    #[test]
    fn config_for_one_host() {
        let info = ConnInfo::parse("host=a,/tmp port=1,2 password=pw user=u").unwrap();
        let config = info.config_for(&info.hosts[1], PgSslMode::Require, info.password.as_deref());
        assert_eq!(config.get_ports(), [2]);
        assert_eq!(config.get_hosts().len(), 1);
        assert_eq!(config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        assert!(info.hosts[1].is_socket());
    }
}
