//! The pod sandbox's process: holds the pod's namespaces, reaps orphaned
//! children and exits 0 on SIGINT or SIGTERM.

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("pause (skiff) {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if std::process::id() != 1 {
        eprintln!("Warning: pause should be the first process");
    }
    skiff_testhost::signals::exit_on_termination();
    skiff_testhost::signals::reap_children();
    skiff_testhost::signals::wait_forever();
}
