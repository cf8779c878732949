//! The Skiff scheduler: places pods on nodes.
//!
//! Not built yet: this crate holds the place its issue will fill. Its binary,
//! `skiff-scheduler`, only answers `--help` for now.
#![forbid(unsafe_code)]
