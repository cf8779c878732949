//! Signal handling without the `libc` crate: a few glibc functions, declared
//! here, that std links anyway. A container's pid 1 ignores every signal it
//! has no handler for, so both binaries install one for SIGTERM and SIGINT.
#![allow(unsafe_code)]

use std::ffi::c_int;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const SIG_IGN: usize = 1;
const WNOHANG: c_int = 1;

unsafe extern "C" {
    // glibc's `signal` has BSD semantics: the handler stays installed and
    // interrupted system calls restart.
    fn signal(signum: c_int, handler: usize) -> usize;
    safe fn pause() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn _exit(status: c_int) -> !;
}

/// Runs in the signal handler: only async-signal-safe calls (write, _exit).
extern "C" fn exit_zero(signum: c_int) {
    let msg: &[u8] = if signum == SIGTERM {
        b"Shutting down, got signal: Terminated\n"
    } else {
        b"Shutting down, got signal: Interrupt\n"
    };
    // SAFETY: `msg` is a valid buffer of `msg.len()` bytes; `_exit` never returns.
    unsafe {
        write(2, msg.as_ptr(), msg.len());
        _exit(0);
    }
}

/// Reaps every child that has exited, without blocking.
extern "C" fn reap(_signum: c_int) {
    // SAFETY: a null status pointer is allowed by waitpid.
    while unsafe { waitpid(-1, std::ptr::null_mut(), WNOHANG) } > 0 {}
}

fn install(signum: c_int, handler: usize) {
    // SAFETY: the handlers above are `extern "C" fn(c_int)` and only make
    // async-signal-safe calls; SIG_IGN is a valid disposition.
    unsafe {
        signal(signum, handler);
    }
}

/// Exits 0 (after one line on stderr) on SIGTERM or SIGINT.
pub fn exit_on_termination() {
    install(SIGTERM, exit_zero as *const () as usize);
    install(SIGINT, exit_zero as *const () as usize);
}

/// Ignores SIGTERM, so that only SIGKILL stops the process (for tests of
/// termination grace periods).
pub fn ignore_sigterm() {
    install(SIGTERM, SIG_IGN);
}

/// Reaps zombie children whenever one exits, as a pid 1 must. Do not combine
/// with `std::process::Command::{output, wait}`: the reaper would take their
/// exit statuses.
pub fn reap_children() {
    install(SIGCHLD, reap as *const () as usize);
}

/// Sleeps until a signal handler exits the process.
pub fn wait_forever() -> ! {
    loop {
        pause();
    }
}
