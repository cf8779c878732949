use clap::Parser;

/// The Skiff scheduler: places pods on nodes. (not implemented yet).
#[derive(Parser)]
#[command(name = "skiff-scheduler", version)]
struct Options {}

fn main() {
    let _ = Options::parse();
    eprintln!("skiff-scheduler: not implemented yet; see the project's issues");
    std::process::exit(2);
}
