//! A PostgreSQL server of one test's own (a fresh cluster in a temporary
//! folder, on a free port), which the test may stop and start again: what
//! a database restart does to the bot and the engines, without disturbing
//! the shared server other tests use. Needs Debian's `postgresql` package,
//! which `scripts/postgres.sh` installs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

pub struct PrivatePostgres {
    bin: PathBuf,
    /// Whether the server's programs run as postgres (we are root).
    as_postgres: bool,
    dir: PathBuf,
    pub port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest installed server's programs (`/usr/lib/postgresql/N/bin`).
fn server_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL server installed: run ./scripts/postgres.sh")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql")
}

impl PrivatePostgres {
    /// Creates the cluster (role `wordup`, trusted on 127.0.0.1) and starts it.
    pub fn start() -> Result<PrivatePostgres> {
        let bin = server_bin()?;
        let as_postgres = is_root();
        remove_stale(&bin, as_postgres);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!(
            "wordup-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        let server = PrivatePostgres {
            bin,
            as_postgres,
            dir,
            port,
        };
        if as_postgres {
            // The server refuses to run as root: it runs as postgres.
            server.run_plain("chown", &["-R", "postgres:postgres", &server.dir_str()])?;
        }
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().context("temp dir is not UTF-8")?,
                "-U",
                "wordup",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// A URL of the server's `postgres` database, for [`crate::pg::TestDb`].
    pub fn admin_url(&self) -> String {
        format!("postgres://wordup:wordup@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`-m fast`: clients are disconnected).
    pub fn stop(&self) -> Result<()> {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", &path_str(&data)?, "-m", "fast", "-w", "stop"],
        )
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) -> Result<()> {
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir_str()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &path_str(&data)?,
                "-o",
                &options,
                "-l",
                &path_str(&self.dir.join("log"))?,
                "-w",
                "start",
            ],
        )
    }

    fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }

    /// One of the server's programs, as postgres when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let program = self.bin.join(program);
        let program = path_str(&program)?;
        if self.as_postgres {
            let mut all = vec!["-u", "postgres", "--", program.as_str()];
            all.extend_from_slice(args);
            self.run_plain("runuser", &all)
        } else {
            self.run_plain(&program, args)
        }
    }

    fn run_plain(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = Command::new(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}

/// Stops and removes the servers of test processes that died without
/// dropping theirs (killed, say): their folders name the process.
fn remove_stale(bin: &Path, as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("wordup-pg-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let stale = PrivatePostgres {
            bin: bin.to_owned(),
            as_postgres,
            dir: entry.path(),
            port: 0,
        };
        drop(stale);
    }
}

fn path_str(path: &Path) -> Result<String> {
    Ok(path.to_str().context("path is not UTF-8")?.to_owned())
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Ok(data) = path_str(&data) {
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
