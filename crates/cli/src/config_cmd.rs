//! `keel config default` and `keel config check`.

use std::process::ExitCode;

use clap::{ArgMatches, Subcommand};

use crate::config_file;
use crate::serve::{ServeArgs, process_env};

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Print a complete, commented configuration file: every `keel serve`
    /// setting with its meaning, flag, environment variable and default.
    Default,
    /// Check the configuration `keel serve` would run with (the same flags,
    /// KEEL_* environment and --config file) and print every effective setting
    /// with where it came from; exits 1 if `keel serve` would refuse it.
    Check(Box<ServeArgs>),
}

/// `matches` are `keel config`'s.
pub(crate) fn run(command: &ConfigCommand, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Default => print!("{}", config_file::default_file()),
        ConfigCommand::Check(_) => {
            let matches = matches.subcommand_matches("check").unwrap_or(matches);
            let resolved = config_file::resolve(matches, &process_env)?;
            print!("{}", resolved.render());
            resolved.config()?;
            println!("# OK: keel serve accepts this configuration.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
