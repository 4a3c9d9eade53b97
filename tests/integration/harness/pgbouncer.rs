//! Debian's PgBouncer in front of a test cluster, on a free port, with a
//! generated ini (trust authentication, a pool of 2 server connections so
//! client connections really share them), run as the `postgres` user when
//! we are root (PgBouncer refuses root).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{free_port, wait_until, Postgres};

pub struct PgBouncer {
    child: Child,
    dir: TempDir,
    pub port: u16,
}

fn postgres_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

impl PgBouncer {
    /// `pool_mode`: `transaction` or `session`.
    pub fn start(database: &Postgres, pool_mode: &str) -> Self {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .expect("pgbouncer is not installed: run scripts/setup.sh");
        let dir = tempfile::Builder::new()
            .prefix("campaign-pgbouncer-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let d = dir.path().display();
        fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let ini = format!(
            "[databases]\n\
             postgres = host=127.0.0.1 port={} dbname=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {d}/users.txt\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = 2\n\
             max_client_conn = 200\n\
             logfile = {d}/pgbouncer.log\n\
             pidfile = {d}/pgbouncer.pid\n",
            database.port()
        );
        let ini_path = dir.path().join("pgbouncer.ini");
        fs::write(&ini_path, ini).unwrap();
        let mut command = Command::new(binary);
        command
            .arg(&ini_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: geteuid cannot fail.
        if let Some((uid, gid)) = postgres_ids().filter(|_| unsafe { libc::geteuid() } == 0) {
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().expect("start pgbouncer");
        let bouncer = PgBouncer { child, dir, port };
        let up = wait_until(Duration::from_secs(10), || {
            postgres::Client::connect(&bouncer.url(), postgres::NoTls).is_ok()
        });
        assert!(up, "pgbouncer did not start:\n{}", bouncer.log());
        bouncer
    }

    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
