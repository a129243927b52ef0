//! The `modernft` binary: parse flags, run the command, print errors a user can act on.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use clap::Parser;
use modernft::cli::{Cli, Command};
use modernft::{embed, Context, Result};

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Embed(args) => {
            let opts = args.to_options()?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut notes = std::io::stderr();
            match &args.input {
                Some(path) => {
                    let file = std::fs::File::open(path)
                        .with_context(|| format!("cannot open --input {}", path.display()))?;
                    embed::run(&opts, BufReader::new(file), &path.display().to_string(), &mut out, &mut notes)
                }
                None => embed::run(&opts, std::io::stdin().lock(), "stdin", &mut out, &mut notes),
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`modernft embed ... | head`) is not an error worth a message.
            if e.chain().contains("Broken pipe") {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "error: {}", e.chain());
            ExitCode::FAILURE
        }
    }
}
