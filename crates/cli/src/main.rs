//! `portcullis`: the server (`serve`, `migrate`, `master-key rotate`) and its admin client
//! (`env`, `org`, `client`, `user`, `webhook`, `api-key`, `keys`, `events`, `audit`).
//!
//! Exit codes: 0 success, 1 a check found problems (`audit verify`), 2 a usage or input error,
//! with one line on standard error saying what to fix.

mod client;
mod serve;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the request path allocates and frees many small buffers
/// per request on every worker thread; in a profile of the token endpoint glibc's malloc and
/// free were ≈ 4.5% of the server's CPU, mimalloc's ≈ 2.7% (bench/RESULTS.md, issue 3).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Identity broker for isolated networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Server configuration flags, shared by `serve`, `migrate` and `master-key`.
#[derive(Args, Clone, Default)]
pub struct ServerFlags {
    /// TOML configuration file (also PORTCULLIS_CONFIG).
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Address to bind, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<String>,
    /// URL clients use to reach this server.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Data directory (SQLite database, master key, first admin key).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// postgres://… to use PostgreSQL instead of the embedded SQLite.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Create the ready-to-use demo environment.
    #[arg(long)]
    pub demo: bool,
    /// human or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Tracing filter, e.g. info or portcullis=debug.
    #[arg(long)]
    pub log_level: Option<String>,
}

impl ServerFlags {
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let mut put = |k: &'static str, val: &Option<String>| {
            if let Some(x) = val {
                v.push((k, x.clone()));
            }
        };
        put("listen", &self.listen);
        put("public_url", &self.public_url);
        put("data_dir", &self.data_dir);
        put("database_url", &self.database_url);
        put("log_format", &self.log_format);
        put("log_level", &self.log_level);
        if self.demo {
            v.push(("demo", "true".into()));
        }
        v
    }

    /// The configuration from every layer.
    pub fn load(&self) -> Result<portcullis_server::Config, String> {
        let file = match &self.config {
            Some(p) => Some((
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            )),
            None => None,
        };
        portcullis_server::Config::load(
            file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            std::env::vars(),
            &self.overrides(),
        )
        .map_err(|e| e.to_string())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (bootstraps an empty data directory on first start).
    Serve(ServerFlags),
    /// Apply pending database migrations and exit.
    Migrate(ServerFlags),
    /// Master key operations.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
    /// Print the embedded, commented default configuration.
    ConfigDefaults,
    #[command(flatten)]
    Admin(client::AdminCommand),
    #[command(flatten)]
    Governance(client::GovernanceCommand),
}

#[derive(Subcommand)]
enum MasterKeyCommand {
    /// Generate a new master key and re-encrypt every signing key under it, in one transaction.
    /// Run it with the server stopped.
    Rotate(ServerFlags),
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => exit_input(&format!("cannot start the async runtime: {e}")),
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve(flags) => serve::serve(flags).await,
            Command::Migrate(flags) => serve::migrate(flags).await,
            Command::MasterKey(MasterKeyCommand::Rotate(flags)) => {
                serve::rotate_master_key(flags).await
            }
            Command::ConfigDefaults => {
                print!("{}", portcullis_server::config::DEFAULTS);
                0
            }
            Command::Admin(cmd) => client::run(cmd).await,
            Command::Governance(cmd) => client::run_governance(cmd).await,
        }
    });
    std::process::exit(code);
}

/// Prints one line saying what to fix and exits with 2.
pub fn exit_input(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}
