use clap::Parser;

/// The Skiff kubelet: runs pods on a node through containerd over CRI. (not implemented yet).
#[derive(Parser)]
#[command(name = "skiff-kubelet", version)]
struct Options {}

fn main() {
    let _ = Options::parse();
    eprintln!("skiff-kubelet: not implemented yet; see the project's issues");
    std::process::exit(2);
}
