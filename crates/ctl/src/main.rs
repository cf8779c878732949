use clap::Parser;

/// skiffctl: the Skiff command-line client. (not implemented yet).
#[derive(Parser)]
#[command(name = "skiffctl", version)]
struct Options {}

fn main() {
    let _ = Options::parse();
    eprintln!("skiffctl: not implemented yet; see the project's issues");
    std::process::exit(2);
}
