//! The `modernft` binary: parse flags, run the command, print errors a user can act on.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use modernft::cli::{run as commands, Cli, Command};
use modernft::Result;

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Embed(args) => commands::embed(args),
        Command::Data(args) => commands::data(args),
        Command::Train(args) => commands::train(args),
        Command::Init(args) => commands::init(args),
        Command::Eval(args) => commands::eval(args),
        Command::Predict(args) => commands::predict(args),
        Command::Save(args) => commands::save(args),
        Command::Bench(args) => commands::bench(args),
        Command::Serve(args) => commands::serve(args),
        Command::MergeParts(args) => commands::merge_parts(args),
    }
}

fn main() -> ExitCode {
    modernft::alloc::tune();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`modernft embed ... | head`) is not an error worth a message.
            if e.is_broken_pipe() {
                return ExitCode::SUCCESS;
            }
            if e.kind() == Some(&modernft::error::Kind::SaidElsewhere) {
                return ExitCode::FAILURE;
            }
            let _ = writeln!(std::io::stderr(), "error: {}", e.chain());
            ExitCode::FAILURE
        }
    }
}
