//! The Skiff controller manager: the control loops that keep the cluster at its desired state.
//!
//! Not built yet: this crate holds the place its issue will fill. Its binary,
//! `skiff-controller-manager`, only answers `--help` for now.
#![forbid(unsafe_code)]
