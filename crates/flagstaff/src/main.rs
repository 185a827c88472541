//! The `flagstaff` binary: one executable, several subcommands.
//!
//! This is the only crate that reads command-line arguments or the environment
//! (ARCHITECTURE.md, invariant 3); it turns them into plain values for the libraries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod eval_command;
mod export_command;
mod relay;
mod server;

/// Self-hosted feature management, wire-compatible with the LaunchDarkly SDKs.
#[derive(Debug, Parser)]
#[command(name = "flagstaff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the management API, SDK delivery, events intake and the dashboard.
    Serve(Box<server::ServeArgs>),
    /// Run a relay: every SDK endpoint, served inside your network from a copy of an upstream
    /// Flagstaff (or another relay) that survives the upstream being unreachable.
    Relay(Box<relay::RelayArgs>),
    /// Write environments to an offline bundle (signed with Ed25519) for `relay --offline`.
    Export(Box<export_command::ExportArgs>),
    /// Evaluate every flag of a data file for every context of a JSON Lines file.
    Eval(eval_command::EvalArgs),
    /// Administration without a running server.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create the default project, its environments and an admin token, and print them once.
    Init {
        #[command(flatten)]
        store: server::StoreArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Import an offline bundle's flags and segments into the environments of the same keys
    /// (promotion between installations; credentials are not imported).
    ImportBundle(Box<export_command::ImportBundleArgs>),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; report the first broken link.
    Verify {
        #[command(flatten)]
        store: server::StoreArgs,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => eval_command::run(&args),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(server::serve(&args))),
        Command::Relay(args) => runtime().and_then(|rt| rt.block_on(relay::run(&args))),
        Command::Export(args) => runtime().and_then(|rt| rt.block_on(export_command::run(&args))),
        Command::Admin(AdminCommand::ImportBundle(args)) => {
            runtime().and_then(|rt| rt.block_on(export_command::run_import(&args)))
        }
        Command::Admin(AdminCommand::Init { store, json }) => {
            runtime().and_then(|rt| rt.block_on(server::admin_init(&store, json)))
        }
        Command::Audit(AuditCommand::Verify { store }) => {
            runtime().and_then(|rt| rt.block_on(server::audit_verify(&store)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flagstaff: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
