//! skiffctl: the Skiff command-line client.
//!
//! Not built yet: this crate holds the place its issue will fill. Its binary,
//! `skiffctl`, only answers `--help` for now.
#![forbid(unsafe_code)]
