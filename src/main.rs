//! The `scopegate` binary: parses the command line and hands over to the library.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use scopegate::config::Config;

/// Envoy ext_authz service that verifies OAuth 2.0 JWT access tokens and enforces route scopes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service (Authorization, grpc.health.v1, reflection).
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "SCOPEGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SCOPEGATE_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate a configuration and print the compiled rules; exit status 0 if valid, 1 if not.
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, env = "SCOPEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, log_format } => serve(config, log_format),
        Command::CheckConfig { config } => check_config(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scopegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref()).context("invalid configuration")?;
    println!("{config}");
    println!("configuration OK");
    Ok(())
}

fn serve(path: Option<PathBuf>, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    // Validate before any port is bound or any task is started.
    let config = Config::load(path.as_deref()).context("invalid configuration")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(scopegate::server::run(
        config,
        scopegate::server::shutdown_signal(),
    ))?;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: escape codes in collected log files break searches and parsers.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
