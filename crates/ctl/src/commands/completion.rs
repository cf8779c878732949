//! `skiffctl completion bash|zsh`.

use anyhow::Result;

/// Output shell completion code for the specified shell.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// bash or zsh.
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
}

pub fn run(args: Args, cli: fn() -> clap::Command) -> Result<()> {
    let mut cmd = cli();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
    };
    clap_complete::generate(shell, &mut cmd, "skiffctl", &mut std::io::stdout());
    Ok(())
}
