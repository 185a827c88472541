//! The `flagstaff` binary: one executable, several subcommands.
//!
//! This is the only crate that reads command-line arguments or the environment
//! (ARCHITECTURE.md, invariant 3); it turns them into plain values for the libraries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod eval_command;

/// Self-hosted feature management, wire-compatible with the LaunchDarkly SDKs.
#[derive(Debug, Parser)]
#[command(name = "flagstaff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate every flag of a data file for every context of a JSON Lines file.
    Eval(eval_command::EvalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => eval_command::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flagstaff: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
