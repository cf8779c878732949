use clap::Parser;

/// The Skiff API server: the Kubernetes REST API over HTTPS. (not implemented yet).
#[derive(Parser)]
#[command(name = "skiff-apiserver", version)]
struct Options {}

fn main() {
    let _ = Options::parse();
    eprintln!("skiff-apiserver: not implemented yet; see the project's issues");
    std::process::exit(2);
}
