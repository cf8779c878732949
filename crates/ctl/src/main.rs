use clap::{CommandFactory, Parser, Subcommand};

/// skiffctl: the Skiff command-line client.
#[derive(Parser)]
#[command(name = "skiffctl", version)]
struct Options {
    #[command(flatten)]
    global: skiff_ctl::GlobalArgs,
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
    #[command(flatten)]
    Client(skiff_ctl::Verb),
}

#[tokio::main]
async fn main() {
    // Usage errors exit 1 (clap's default is 2), as kubectl's do.
    let options = match Options::try_parse() {
        Ok(options) => options,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let result = match options.command {
        Command::Up(args) => skiff_cluster::up(args).await,
        Command::Down(args) => skiff_cluster::down(args).await,
        Command::Status(args) => skiff_cluster::status(args).await,
        Command::Join(args) => skiff_cluster::join(args).await,
        Command::Client(verb) => skiff_ctl::run(verb, &options.global, Options::command).await,
    };
    if let Err(e) = result {
        eprintln!("{}", skiff_ctl::rest::error_text(&e));
        std::process::exit(1);
    }
}
