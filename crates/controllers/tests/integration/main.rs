//! The controllers' integration tests, as one test binary (one link and one
//! executable instead of one per file: each is ~240 MB in a debug build).
//! Each module runs the controllers it is about against a real Skiff API
//! server in-process; `common` is what they share.

#[allow(dead_code)]
mod common;

mod basic;
mod batch;
mod certificates;
mod collectors;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod failover;
mod gc;
mod hpa;
mod nodeipam;
mod nodelifecycle;
mod replicaset;
mod resourcequota;
mod statefulset;
mod volume;
