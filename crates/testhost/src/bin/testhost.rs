//! `testhost <command> [args]`: see `testhost help`.

fn main() {
    skiff_testhost::signals::exit_on_termination();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(skiff_testhost::commands::run(&args));
}
