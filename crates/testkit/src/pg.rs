//! A throwaway PostgreSQL cluster for tests.
//!
//! A test process starts at most one cluster ([`shared`]) in a fresh temporary directory, on a
//! free loopback port, with fsync off and trust authentication; each test then takes a database of
//! its own ([`PgCluster::create_database`]), so tests never see each other's rows. A watchdog
//! process stops the cluster and removes its directory once this process is gone — it waits for
//! the end of a pipe that only this process holds, so that happens however the process ends:
//! returning, panicking, or killed by the test runner. A crashed run leaves nothing the next one
//! trips over: every cluster gets a new directory and a new port.
//!
//! `initdb` refuses to run as root, and CI runs tests as root, so as root every server binary runs
//! as the `postgres` system user that Debian's package creates. The test runner (nextest) runs
//! every test in its own process, so start-up time counts: clusters live in RAM (`/dev/shm`) when
//! there is room, and `initdb`'s output is kept once per machine as a template that later clusters
//! copy (about 0.3 s from nothing to a migrated database here, against 1–2 s with `initdb` on disk).
//!
//! A missing PostgreSQL installation is an error, never a skipped test: CI must exercise both
//! storage backends.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow, bail};

const INSTALL_HINT: &str = "install postgresql (apt-get install postgresql)";
const INITDB_ARGS: [&str; 8] = [
    "-U",
    "postgres",
    "--auth=trust",
    "--encoding=UTF8",
    "--locale=C",
    "--no-sync",
    "--no-instructions",
    // 1 MiB WAL segments instead of 16: tests write little, and a smaller template copies faster.
    "--wal-segsize=1",
];
const SERVER_BINARIES: [&str; 4] = ["initdb", "pg_ctl", "postgres", "createdb"];

static SHARED: tokio::sync::OnceCell<PgCluster> = tokio::sync::OnceCell::const_new();

/// This process's cluster, started on first use.
pub async fn shared() -> anyhow::Result<&'static PgCluster> {
    SHARED
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(PgCluster::start)
                .await
                .map_err(|e| anyhow!("starting PostgreSQL panicked: {e}"))?
        })
        .await
}

/// A fresh, empty database on this process's cluster; returns its URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    shared().await?.create_database().await
}

/// The user the server binaries run as, and who owns the cluster's files.
#[derive(Debug, Clone, Copy)]
enum RunAs {
    /// The current (non-root) user.
    Me { uid: u32 },
    /// Root hands the cluster to the `postgres` system user.
    Postgres { uid: u32, gid: u32 },
}

impl RunAs {
    fn detect() -> anyhow::Result<Self> {
        // /proc/self belongs to the process's effective user.
        let uid = std::fs::metadata("/proc/self")
            .context("reading /proc/self to learn the current user")?
            .uid();
        if uid != 0 {
            return Ok(Self::Me { uid });
        }
        let missing = || {
            anyhow!(
                "tests run as root, so PostgreSQL must run as the `postgres` user, which does not exist: {INSTALL_HINT}"
            )
        };
        let out = Command::new("getent")
            .args(["passwd", "postgres"])
            .stdin(Stdio::null())
            .output()
            .context("running getent")?;
        if !out.status.success() {
            return Err(missing());
        }
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let fields: Vec<&str> = line.trim().split(':').collect();
        match (
            fields.get(2).and_then(|f| f.parse().ok()),
            fields.get(3).and_then(|f| f.parse().ok()),
        ) {
            (Some(uid), Some(gid)) => Ok(Self::Postgres { uid, gid }),
            _ => Err(missing()),
        }
    }

    fn owner(self) -> u32 {
        match self {
            Self::Me { uid } | Self::Postgres { uid, .. } => uid,
        }
    }

    /// Makes `path` (a directory this process just created) the cluster user's.
    fn hand_over(self, path: &Path) -> anyhow::Result<()> {
        if let Self::Postgres { uid, gid } = self {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", path.display()))?;
        }
        Ok(())
    }

    /// The start of a command line that runs a program as the cluster user.
    fn prefix(self) -> Vec<PathBuf> {
        match self {
            Self::Me { .. } => Vec::new(),
            Self::Postgres { .. } => {
                let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
                    .into_iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| PathBuf::from("runuser"));
                vec![runuser, "-u".into(), "postgres".into(), "--".into()]
            }
        }
    }
}

/// A running PostgreSQL server; dropping it stops the server and removes its files.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    run_as: RunAs,
    port: u16,
    next_db: AtomicU64,
    watchdog: Option<Watchdog>,
}

/// A process that stops the cluster when its stdin closes, i.e. when this process drops the pipe
/// or ends.
struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgCluster(127.0.0.1:{}, {})",
            self.port,
            self.dir.display()
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            drop(w.pipe.take());
            let _ = w.child.wait();
        }
    }
}

impl PgCluster {
    /// Starts a new cluster (blocking, about a second at most). Fails, saying what to install,
    /// when PostgreSQL's server binaries are missing.
    pub fn start() -> anyhow::Result<Self> {
        let bin = find_bin_dir()?;
        let run_as = RunAs::detect()?;
        let base = base_dir(run_as);
        let dir = private_dir("portcullis-pg-")
            .tempdir_in(&base)
            .with_context(|| format!("creating a directory in {}", base.display()))?
            .keep();
        // From here on, dropping `cluster` (on any error too) stops the server and removes `dir`.
        let mut cluster = Self {
            watchdog: Some(spawn_watchdog(&bin, run_as, &dir)?),
            bin,
            dir,
            run_as,
            port: 0,
            next_db: AtomicU64::new(1),
        };
        run_as.hand_over(&cluster.dir)?;
        let template = Template::new(&base, &cluster.bin, run_as);
        if template.usable() {
            if cluster.copy_data(&template.data()).is_ok() && cluster.configure_and_start().is_ok()
            {
                return Ok(cluster);
            }
            // A template damaged since it was made (a /tmp cleaner, say): rebuild it below.
            template.discard();
            let _ = std::fs::remove_dir_all(cluster.data());
        }
        cluster.initdb(&cluster.data())?;
        template.publish(&cluster);
        cluster.configure_and_start()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, uniquely named, empty database and returns its URL.
    pub async fn create_database(&self) -> anyhow::Result<String> {
        let name = format!(
            "portcullis_test_{}",
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = self.server_cmd("createdb");
        cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg(&name);
        let out = tokio::process::Command::from(cmd)
            .output()
            .await
            .context("running createdb")?;
        check("createdb", &out)?;
        Ok(self.url(&name))
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn server_cmd(&self, program: &str) -> Command {
        server_cmd(&self.bin, self.run_as, program)
    }

    fn initdb(&self, data: &Path) -> anyhow::Result<()> {
        let mut cmd = self.server_cmd("initdb");
        cmd.arg("-D").arg(data).args(INITDB_ARGS);
        let out = cmd.output().context("running initdb")?;
        check("initdb", &out)
    }

    fn copy_data(&self, from: &Path) -> anyhow::Result<()> {
        // `cp -a` keeps ownership and the 0700 mode PostgreSQL insists on.
        let out = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(self.data())
            .stdin(Stdio::null())
            .output()
            .context("running cp")?;
        check("copying the template cluster", &out)
    }

    fn configure_and_start(&mut self) -> anyhow::Result<()> {
        let socket_dir = self.dir.display().to_string().replace('\'', "''");
        // Connections: `cargo test` runs a binary's tests on one cluster, a thread per core, each
        // test with a pool of up to 8.
        let settings = format!(
            "\n# portcullis testkit\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             shared_buffers = 32MB\n\
             max_connections = 300\n"
        );
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        text.push_str(&settings);
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        // The port is free when we look; another process may take it before the server binds it.
        for attempt in 1..=3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("finding a free port")?
                .port();
            let _ = std::fs::remove_file(self.log());
            let mut cmd = self.server_cmd("pg_ctl");
            cmd.arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log())
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {port}"))
                .arg("start");
            let out = cmd.output().context("running pg_ctl start")?;
            if out.status.success() {
                self.port = port;
                return Ok(());
            }
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            if attempt < 3 && log.contains("already in use") {
                continue;
            }
            return check("pg_ctl start", &out)
                .with_context(|| format!("server log {}:\n{log}", self.log().display()));
        }
        bail!("no free port for PostgreSQL after 3 attempts")
    }
}

/// A data directory fresh from `initdb`, kept in the temporary directory for later clusters.
/// Only a directory owned by the cluster user and closed to everyone else is trusted: anyone who
/// could plant one could run code as that user.
struct Template {
    path: PathBuf,
    base: PathBuf,
    run_as: RunAs,
}

impl Template {
    fn new(base: &Path, bin: &Path, run_as: RunAs) -> Self {
        // A new server build (a package upgrade) gets a new template.
        let mut h = DefaultHasher::new();
        bin.hash(&mut h);
        if let Ok(m) = std::fs::metadata(bin.join("postgres")) {
            (m.len(), m.mtime(), m.ino()).hash(&mut h);
        }
        run_as.owner().hash(&mut h);
        INITDB_ARGS.hash(&mut h);
        Self {
            path: base.join(format!("portcullis-pg-template-{:016x}", h.finish())),
            base: base.to_owned(),
            run_as,
        }
    }

    fn data(&self) -> PathBuf {
        self.path.join("data")
    }

    fn usable(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| {
            m.is_dir() && m.uid() == self.run_as.owner() && m.permissions().mode() & 0o077 == 0
        }) && self.data().join("PG_VERSION").is_file()
    }

    /// Best effort: a cluster that could not publish its template still runs.
    fn publish(&self, cluster: &PgCluster) {
        let Ok(staging) = private_dir("portcullis-pg-staging-").tempdir_in(&self.base) else {
            return;
        };
        let copied = self.run_as.hand_over(staging.path()).is_ok()
            && Command::new("cp")
                .arg("-a")
                .arg(cluster.data())
                .arg(staging.path().join("data"))
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
        // `rename` of a directory fails if another process published first; keep theirs.
        if copied && std::fs::rename(staging.path(), &self.path).is_ok() {
            let _ = staging.keep();
        }
    }

    fn discard(&self) {
        if self.usable() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin` (Debian), else a directory on `PATH`, that holds
/// the server binaries.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_server = |d: &Path| SERVER_BINARIES.iter().all(|b| d.join(b).is_file());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin);
    let on_path =
        || std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has_server(d)));
    debian.or_else(on_path).ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries ({}) were not found in /usr/lib/postgresql/*/bin or on PATH: {INSTALL_HINT}",
            SERVER_BINARIES.join(", ")
        )
    })
}

/// Where clusters live: RAM-backed `/dev/shm` when it has room (copying or creating a cluster
/// there takes a tenth of the time it takes on disk), else the temporary directory — `/tmp` as
/// root, since the postgres user must reach it and root's `TMPDIR` may be closed to it.
fn base_dir(run_as: RunAs) -> PathBuf {
    const ROOM_KIB: u64 = 1 << 20;
    let shm = Path::new("/dev/shm");
    let available_kib = Command::new("df")
        .arg("-Pk")
        .arg(shm)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse::<u64>()
                .ok()
        });
    if available_kib.is_some_and(|k| k >= ROOM_KIB) {
        return shm.to_owned();
    }
    match run_as {
        RunAs::Me { .. } => std::env::temp_dir(),
        RunAs::Postgres { .. } => PathBuf::from("/tmp"),
    }
}

/// A temporary directory open to its owner only.
fn private_dir(prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700));
    b
}

fn server_cmd(bin: &Path, run_as: RunAs, program: &str) -> Command {
    let mut argv = run_as.prefix();
    argv.push(bin.join(program));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        // The test's working directory may be closed to the postgres user.
        .current_dir("/");
    cmd
}

/// Starts the process that, once this process's end of its stdin pipe closes, stops the server
/// (if it ever started) and removes `dir`. It runs in its own process group, so a test runner
/// that kills the test's group on a timeout does not take it along, and with no output handles,
/// so the runner does not wait for it.
fn spawn_watchdog(bin: &Path, run_as: RunAs, dir: &Path) -> anyhow::Result<Watchdog> {
    let stop = server_cmd(bin, run_as, "pg_ctl");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"cat >/dev/null; dir=$1; shift; "$@" stop -D "$dir/data" -m immediate; rm -rf -- "$dir""#)
        .arg("portcullis-pg-watchdog")
        .arg(dir)
        .arg(stop.get_program())
        .args(stop.get_args())
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the cluster's watchdog (sh)")?;
    let pipe = child.stdin.take();
    Ok(Watchdog { child, pipe })
}

fn check(what: &str, out: &Output) -> anyhow::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
