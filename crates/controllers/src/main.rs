use clap::Parser;

/// The Skiff controller manager: the control loops that keep the cluster at its desired state. (not implemented yet).
#[derive(Parser)]
#[command(name = "skiff-controller-manager", version)]
struct Options {}

fn main() {
    let _ = Options::parse();
    eprintln!("skiff-controller-manager: not implemented yet; see the project's issues");
    std::process::exit(2);
}
