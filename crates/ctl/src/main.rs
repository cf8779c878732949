use clap::{Parser, Subcommand};

/// skiffctl: the Skiff command-line client.
#[derive(Parser)]
#[command(name = "skiffctl", version)]
struct Options {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a single-node cluster on this machine.
    Up(skiff_cluster::UpArgs),
    /// Stop the cluster this machine runs.
    Down(skiff_cluster::DownArgs),
    /// Show each component's health.
    Status(skiff_cluster::StatusArgs),
    /// Join this machine to a cluster as a node.
    Join(skiff_cluster::JoinArgs),
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let result = match options.command {
        Command::Up(args) => skiff_cluster::up(args).await,
        Command::Down(args) => skiff_cluster::down(args).await,
        Command::Status(args) => skiff_cluster::status(args).await,
        Command::Join(args) => skiff_cluster::join(args).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
