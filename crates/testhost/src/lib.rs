//! Skiff's test images: the programs that run inside the containers Skiff's
//! tests start. `testhost` is a small agnhost (an HTTP server with health,
//! readiness and exit switches, a TCP echo server, and commands that write,
//! sleep and exit on demand); `pause` is the pod sandbox's process, which
//! sleeps, reaps orphans and exits on SIGINT/SIGTERM as upstream's `pause.c`.
//!
//! Both are built as static binaries for images made from scratch
//! (`scripts/build-images.sh`), so this crate uses std only and never resolves
//! host names (no NSS in a static glibc binary).
#![deny(unsafe_code)]

pub mod args;
pub mod commands;
mod http;
pub mod signals;
