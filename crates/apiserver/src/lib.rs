//! The Skiff API server: the Kubernetes REST API over HTTPS.
//!
//! Not built yet: this crate holds the place its issue will fill. Its binary,
//! `skiff-apiserver`, only answers `--help` for now.
#![forbid(unsafe_code)]
