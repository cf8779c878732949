//! The Skiff kubelet: runs pods on a node through containerd over CRI.
//!
//! Not built yet: this crate holds the place its issue will fill. Its binary,
//! `skiff-kubelet`, only answers `--help` for now.
#![forbid(unsafe_code)]
