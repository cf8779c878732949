use clap::Parser;

/// The Skiff proxy: Service routing through iptables. (not implemented yet).
#[derive(Parser)]
#[command(name = "skiff-proxy", version)]
struct Options {}

fn main() {
    let _ = Options::parse();
    eprintln!("skiff-proxy: not implemented yet; see the project's issues");
    std::process::exit(2);
}
