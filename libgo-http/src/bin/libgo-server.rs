//! `libgo-server`: the LibGo REST server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use libgo_http::{Config, Server};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "libgo-server",
    version,
    about = "One REST API for VMs and containers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API. Settings come from the config file, then LIBGO_* variables, then flags.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "LIBGO_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the database and exports.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite://… or postgres://…).
    #[arg(long)]
    database_url: Option<String>,
    /// Requests per client and minute (0: no limit).
    #[arg(long)]
    rate_limit_per_minute: Option<u32>,
    /// Do not connect to Docker.
    #[arg(long)]
    no_docker: bool,
    /// Do not connect to libvirt.
    #[arg(long)]
    no_kvm: bool,
    /// libvirt URI.
    #[arg(long)]
    kvm_uri: Option<String>,
}

fn config_from(args: &ServeArgs) -> Result<Config, Box<dyn std::error::Error>> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.apply_env(std::env::vars())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(u) = &args.database_url {
        config.database_url = Some(libgo_http::config::Secret(u.clone()));
    }
    if let Some(r) = args.rate_limit_per_minute {
        config.rate_limit_per_minute = r;
    }
    if args.no_docker {
        config.docker.enabled = false;
    }
    if args.no_kvm {
        config.kvm.enabled = false;
    }
    if let Some(u) = &args.kvm_uri {
        config.kvm.uri = u.clone();
    }
    Ok(config)
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
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Starting builds the OpenAPI document (MiBs of short strings, dropped once served as JSON)
/// and hashes the administrator's password (19 MiB for argon2). glibc keeps what was freed
/// for reuse, and after that large block its trim threshold stays too high to give it back;
/// trimming takes an idle server from about 9 to 5 MiB of anonymous memory (measured in gdb
/// at this call, `benches/server_rss.sh` for the whole).
fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let config = config_from(&args)?;
    let listen = config.listen;
    let backends = libgo_http::backends::from_config(&config)?;
    let server = Server::new(config, Arc::new(libgo_core::LibGo::new())).await?;
    if let Some(p) = server.take_generated_admin_password() {
        // The one deliberate print: the generated password is shown once, never logged.
        println!(
            "Generated password for the first administrator {:?}: {p}\n\
             Set LIBGO_ADMIN_PASSWORD to choose it instead. It is not shown again.",
            server.state().config.admin_user
        );
    }
    server.attach_backends(backends);
    server.attach_hosts().await?;
    release_startup_memory();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    server.serve(listener, shutdown_signal()).await?;
    Ok(())
}
