//! Certificates for the TLS tests, made with the `openssl` command line:
//! a CA, a server certificate for `localhost` signed by it, a client
//! certificate for the `postgres` user, and a second CA nobody trusts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::Postgres;

pub struct Certificates {
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is not installed: run scripts/setup.sh");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn make_ca(dir: &Path, name: &str) {
    let key = format!("{name}.key");
    let crt = format!("{name}.crt");
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
    args.extend(EC);
    args.extend([
        "-keyout",
        &key,
        "-out",
        &crt,
        "-subj",
        "/CN=campaign test CA",
    ]);
    openssl(dir, &args);
}

/// A certificate `name` for `cn` with `san` (`DNS:...`), signed by `ca`.
fn make_signed(dir: &Path, ca: &str, name: &str, cn: &str, san: Option<&str>, serial: &str) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let subject = format!("/CN={cn}");
    let mut args = vec!["req", "-nodes"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
    openssl(dir, &args);
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    let ext = format!("{name}.ext");
    fs::write(
        dir.join(&ext),
        san.map(|san| format!("subjectAltName={san}\n"))
            .unwrap_or_default(),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            serial,
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ],
    );
    fs::set_permissions(dir.join(&key), fs::Permissions::from_mode(0o600)).unwrap();
}

impl Certificates {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("campaign-certs-")
            .tempdir()
            .unwrap();
        make_ca(dir.path(), "ca");
        make_ca(dir.path(), "other-ca");
        make_signed(
            dir.path(),
            "ca",
            "server",
            "localhost",
            Some("DNS:localhost"),
            "2",
        );
        make_signed(dir.path(), "ca", "client", "postgres", None, "3");
        Certificates { dir }
    }

    /// `name.crt` or `name.key` (name: ca, other-ca, server, client).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn path_str(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// Turns TLS on in `postgres` with the server certificate, the CA for
    /// client certificates, and `hba` as pg_hba.conf (restarts it).
    pub fn serve(&self, postgres: &mut Postgres, hba: &str) {
        let read = |file: &str| fs::read(self.path(file)).unwrap();
        postgres.write_file("server.crt", &read("server.crt"), 0o644);
        postgres.write_file("server.key", &read("server.key"), 0o600);
        postgres.write_file("ca.crt", &read("ca.crt"), 0o644);
        let dir = postgres.dir();
        let settings = format!(
            "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n\
             ssl_ca_file = '{0}/ca.crt'\n",
            dir.display()
        );
        postgres.reconfigure(&settings, Some(hba));
    }
}
