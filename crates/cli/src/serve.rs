//! `serve` (with the key scheduler, the audit checkpointer and the webhook dispatcher), `migrate` and `master-key rotate`.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::SystemClock;
use portcullis_crypto::{MasterKey, SystemRandom};
use portcullis_server::bootstrap::{canary_for, open_store};
use portcullis_server::{Bootstrap, Config};
use portcullis_store::Sealed;

use crate::ServerFlags;

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn load(flags: &ServerFlags) -> Result<Config, i32> {
    flags.load().map_err(|e| {
        eprintln!("error: {e}");
        2
    })
}

pub async fn serve(flags: ServerFlags) -> i32 {
    let config = match load(&flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config);
    let (app, report) = match Bootstrap::run(&config, Arc::new(SystemClock)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e} (set --listen or PORTCULLIS_LISTEN)",
                config.listen
            );
            return 2;
        }
    };
    print_welcome(&config, &report);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(portcullis_server::run_key_scheduler(
        app.clone(),
        Duration::from_secs(config.key_check_interval_seconds),
        stop_rx.clone(),
    ));
    // Signed audit checkpoints: every node may run it, a head is kept once (the first signer).
    let checkpointer = tokio::spawn(portcullis_server::checkpoints::run_checkpointer(
        app.clone(),
        Duration::from_secs(config.audit_checkpoint_interval_seconds),
        stop_rx.clone(),
    ));
    // The credential sweep: announces expired credentials once (a notice row per expiry), so
    // every node may run it too.
    let sweeper = tokio::spawn(portcullis_server::credentials::run_credential_sweeper(
        app.clone(),
        Duration::from_secs(config.credential_sweep_interval_seconds),
        stop_rx.clone(),
    ));
    // The webhook dispatcher: leases due deliveries row by row, so every node may run one.
    let dispatcher = config
        .webhook_dispatcher
        .then(|| tokio::spawn(portcullis_server::webhooks::dispatcher(&app, &config).run(stop_rx)));
    tracing::info!(listen = %config.listen, backend = app.store.backend().as_str(), "portcullis is serving");
    let store = app.store.clone();
    let result = portcullis_server::serve(app, listener, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    let _ = sweeper.await;
    let _ = checkpointer.await;
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
    store.close().await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            0
        }
        Err(e) => {
            eprintln!("error: server failed: {e}");
            1
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn print_welcome(config: &Config, report: &portcullis_server::BootstrapReport) {
    let url = &config.public_url;
    println!(
        "Portcullis is listening on {} (public URL {url})",
        config.listen
    );
    if let Some(p) = &report.master_key_created {
        println!(
            "  created master key file {} (mode 0600): back it up; without it the signing keys are lost",
            p.display()
        );
    }
    if let Some((secret, path)) = &report.first_admin_key {
        println!();
        println!(
            "  First admin key (shown once, also written to {} with mode 0600):",
            path.display()
        );
        println!("    {}", secret.expose());
        println!();
    }
    if let Some(text) = &report.demo_environment {
        println!();
        print!("{text}");
        println!();
    }
    println!("  Next steps (in another terminal):");
    println!("    export PORTCULLIS_URL={url}");
    println!(
        "    export PORTCULLIS_ADMIN_KEY=$(cat {}/admin.key)",
        config.data_dir.display()
    );
    println!("    portcullis env list");
    println!("    portcullis org create --env demo --name \"Acme\" --domain acme.test");
    println!(
        "  Health {url}/readyz   metrics {url}/metrics   admin API {url}/admin/v1/openapi.json"
    );
}

pub async fn migrate(flags: ServerFlags) -> i32 {
    let config = match load(&flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match open_store(&config).await {
        Ok(store) => {
            println!(
                "migrations applied: the {} database is at version {}",
                store.backend().as_str(),
                store.latest_migration()
            );
            store.close().await;
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Generates a new master key and re-seals every signing key under it in one transaction.
///
/// Crash safety: the new key is written to `<key>.next` before the transaction; after commit the
/// old file becomes `<key>.previous` and `.next` takes its place. If the process dies between the
/// commit and the renames, `<key>.next` is the key that opens the database.
pub async fn rotate_master_key(flags: ServerFlags) -> i32 {
    let config = match load(&flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fail = |m: String| {
        eprintln!("error: {m}");
        2
    };
    let path = config.master_key_path();
    let old = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| MasterKey::from_text(&t).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => return fail(format!("master key file {}: {e}", path.display())),
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let (new, text) = MasterKey::generate(&SystemRandom);
    let next_path = path.with_extension("key.next");
    if let Err(e) = write_new(&next_path, &text) {
        return fail(format!("cannot write {}: {e}", next_path.display()));
    }
    let reseal = |kind: Sealed, id: &str, env: &str, sealed: &[u8]| -> Result<Vec<u8>, String> {
        // Each kind of sealed value has associated data of its own.
        use portcullis_core::ids::{ConnectionId, EnvId, WebhookId};
        let aad = match kind {
            Sealed::SigningKey => portcullis_server::keys::seal_aad(id, env),
            Sealed::WebhookSecret => portcullis_events::dispatcher::secret_aad(
                &WebhookId::from_stored(id.to_owned()),
                &EnvId::from_stored(env.to_owned()),
            ),
            Sealed::ConnectionSecrets => portcullis_server::admin::connection_secrets_aad(
                &ConnectionId::from_stored(id.to_owned()),
                env,
            ),
        };
        let plain = old.open(&aad, sealed).map_err(|e| e.to_string())?;
        new.seal(&SystemRandom, &aad, &plain)
            .map_err(|e| e.to_string())
    };
    let canary = match canary_for(&new) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let now = portcullis_core::Clock::now(&SystemClock);
    match store
        .reseal_signing_keys(
            "cli:master-key-rotate",
            now,
            &reseal,
            (canary.0, &canary.1),
            new.fingerprint(),
        )
        .await
    {
        Ok(n) => {
            let prev = path.with_extension("key.previous");
            if let Err(e) =
                std::fs::rename(&path, &prev).and_then(|()| std::fs::rename(&next_path, &path))
            {
                return fail(format!(
                    "keys re-sealed, but moving {} into place failed: {e}; it is the key to use now",
                    next_path.display()
                ));
            }
            println!(
                "re-sealed {n} signing keys under the new master key {} ({}); the old key is in {}",
                new.fingerprint(),
                path.display(),
                prev.display()
            );
            0
        }
        Err(e) => {
            let _ = std::fs::remove_file(&next_path);
            fail(format!("nothing changed: {e}"))
        }
    }
}

fn write_new(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path)?;
    f.write_all(format!("{text}\n").as_bytes())?;
    f.sync_all()
}
