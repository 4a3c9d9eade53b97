//! A PostgreSQL server for the tests: by default a throwaway cluster made
//! with initdb (as the `postgres` user when we run as root, since initdb
//! refuses root) and started with pg_ctl on a free port. With
//! `CAMPAIGN_TEST_DATABASE_URL` set, `start` instead creates a fresh
//! database on that server; tests that stop the server use `start_owned`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

use super::free_port;

pub struct Postgres {
    url: String,
    kind: Kind,
}

enum Kind {
    /// Our own cluster: we may stop and start it.
    Owned {
        dir: TempDir,
        port: u16,
        running: bool,
    },
    /// A database created for this test on a server we don't control.
    External { admin_url: String, database: String },
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/setup.sh")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|dir| dir.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect("no initdb under /usr/lib/postgresql")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root.
fn run_pg_tool(tool: &str, args: &[&str]) -> Output {
    let program = bin_dir().join(tool);
    let mut command = if running_as_root() {
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", "postgres", "--"]).arg(&program);
        runuser
    } else {
        Command::new(&program)
    };
    command.args(args);
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {tool}: {error}"))
}

fn check(tool: &str, output: Output) {
    assert!(
        output.status.success(),
        "{tool} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// A fresh, empty database for one test.
    pub fn start() -> Self {
        match std::env::var("CAMPAIGN_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => Self::external(admin_url),
            _ => Self::start_owned(),
        }
    }

    /// A cluster of our own, which the test may stop and start.
    pub fn start_owned() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("campaign-pg-")
            .tempdir()
            .expect("temporary directory");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("data directory");
        if running_as_root() {
            // The postgres user must own the cluster and reach it.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            check(
                "chown",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path())
                    .output()
                    .expect("chown"),
            );
        }
        let data_arg = data.display().to_string();
        check(
            "initdb",
            run_pg_tool(
                "initdb",
                &[
                    "-D",
                    &data_arg,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            ),
        );
        Self::start_in(dir)
    }

    /// Starts the cluster under `dir/data` on a free port.
    fn start_in(dir: TempDir) -> Self {
        let port = free_port();
        let mut postgres = Postgres {
            url: format!(
                "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"
            ),
            kind: Kind::Owned {
                dir,
                port,
                running: false,
            },
        };
        postgres.start_again();
        postgres
    }

    fn external(admin_url: String) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let database = format!(
            "campaign_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
            .expect("connect to CAMPAIGN_TEST_DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .expect("create test database");
        let mut config: postgres::Config = admin_url.parse().expect("database URL");
        config.dbname(&database);
        Postgres {
            url: config_to_url(&config, &database),
            kind: Kind::External {
                admin_url,
                database,
            },
        }
    }

    /// libpq connection string for `campaign.database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to PostgreSQL")
    }

    /// Stops the server (fast shutdown); only for owned clusters.
    pub fn stop(&mut self) {
        let Kind::Owned { dir, running, .. } = &mut self.kind else {
            panic!("cannot stop a server given by CAMPAIGN_TEST_DATABASE_URL");
        };
        if *running {
            let data = dir.path().join("data").display().to_string();
            check(
                "pg_ctl stop",
                run_pg_tool("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]),
            );
            *running = false;
        }
    }

    /// Starts an owned cluster again (after `stop`), on the same port.
    pub fn start_again(&mut self) {
        let Kind::Owned { dir, port, running } = &mut self.kind else {
            panic!("cannot start a server given by CAMPAIGN_TEST_DATABASE_URL");
        };
        if *running {
            return;
        }
        let data = dir.path().join("data").display().to_string();
        let log = dir.path().join("postgres.log").display().to_string();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            dir.path().display()
        );
        check(
            "pg_ctl start",
            run_pg_tool(
                "pg_ctl",
                &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
            ),
        );
        *running = true;
    }
}

/// For the connection tests: what an operator configures around a cluster
/// (TLS, pg_hba.conf, a streaming standby).
impl Postgres {
    fn owned_dir(&self) -> &Path {
        let Kind::Owned { dir, .. } = &self.kind else {
            panic!("only for clusters of our own");
        };
        dir.path()
    }

    pub fn port(&self) -> u16 {
        let Kind::Owned { port, .. } = &self.kind else {
            panic!("only for clusters of our own");
        };
        *port
    }

    /// The cluster's directory (the data directory is `data` in it).
    pub fn dir(&self) -> PathBuf {
        self.owned_dir().to_path_buf()
    }

    /// Connection string through the Unix socket, which `local` lines of
    /// pg_hba.conf govern (the tests' own connections when TCP is locked).
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.owned_dir().display(),
            self.port()
        )
    }

    pub fn socket_client(&self) -> postgres::Client {
        postgres::Client::connect(&self.socket_url(), postgres::NoTls)
            .expect("connect to PostgreSQL through its socket")
    }

    /// Writes `contents` to `name` in the cluster's directory, owned by
    /// the server's user, with `mode`.
    pub fn write_file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.owned_dir().join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        if running_as_root() {
            check(
                "chown",
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&path)
                    .output()
                    .unwrap(),
            );
        }
        path
    }

    /// Adds `settings` to postgresql.conf, replaces pg_hba.conf with `hba`
    /// when given, and restarts the server.
    pub fn reconfigure(&mut self, settings: &str, hba: Option<&str>) {
        let data = self.owned_dir().join("data");
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut conf, format!("\n{settings}\n").as_bytes()).unwrap();
        if let Some(hba) = hba {
            fs::write(data.join("pg_hba.conf"), hba).unwrap();
        }
        self.stop();
        self.start_again();
    }

    /// A streaming standby of this cluster (`pg_basebackup -R`), started
    /// on its own port.
    pub fn start_standby(&self) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("campaign-pg-standby-")
            .tempdir()
            .expect("temporary directory");
        if running_as_root() {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            check(
                "chown",
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.path())
                    .output()
                    .unwrap(),
            );
        }
        let data = dir.path().join("data").display().to_string();
        let port = self.port().to_string();
        let socket = self.owned_dir().display().to_string();
        check(
            "pg_basebackup",
            run_pg_tool(
                "pg_basebackup",
                &[
                    "-D",
                    &data,
                    "-R",
                    "-X",
                    "stream",
                    "-h",
                    &socket,
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "--no-sync",
                ],
            ),
        );
        Self::start_in(dir)
    }

    /// Promotes a standby (`pg_ctl promote`, waiting until it is done).
    pub fn promote(&self) {
        let data = self.owned_dir().join("data").display().to_string();
        check(
            "pg_ctl promote",
            run_pg_tool("pg_ctl", &["-D", &data, "-w", "promote"]),
        );
    }

    /// Stops the server as a crash would (`-m immediate`).
    pub fn crash(&mut self) {
        let Kind::Owned { dir, running, .. } = &mut self.kind else {
            panic!("only for clusters of our own");
        };
        let data = dir.path().join("data").display().to_string();
        check(
            "pg_ctl stop -m immediate",
            run_pg_tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]),
        );
        *running = false;
    }
}

fn config_to_url(config: &postgres::Config, database: &str) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let mut url =
        format!("host={host} port={port} user={user} dbname={database} connect_timeout=5");
    if let Some(password) = config.get_password() {
        url.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
    }
    url
}

impl Drop for Postgres {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::Owned { dir, running, .. } => {
                if *running {
                    let data = dir.path().join("data").display().to_string();
                    let _ = run_pg_tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
                }
            }
            Kind::External {
                admin_url,
                database,
            } => {
                if let Ok(mut admin) = postgres::Client::connect(admin_url, postgres::NoTls) {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
                }
            }
        }
    }
}
