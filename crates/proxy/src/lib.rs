//! The Skiff proxy: Service routing through iptables.
//!
//! Not built yet: this crate holds the place its issue will fill. Its binary,
//! `skiff-proxy`, only answers `--help` for now.
#![forbid(unsafe_code)]
