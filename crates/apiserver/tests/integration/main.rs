//! The API server's integration tests, as one test binary (one link and one
//! executable instead of one per file). Each module starts real Skiff API
//! servers in-process and drives them over HTTPS.

mod common;

mod admission;
mod api;
mod authn;
mod crd;
mod crd_conversion;
mod events;
mod fuzz;
mod kubelet_proxy;
mod node_authz;
mod policy;
mod rbac;
mod service_repair;
