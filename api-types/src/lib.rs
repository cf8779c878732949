//! The typed Kubernetes API that every Skiff crate shares.
//!
//! The object types themselves come from `k8s-openapi` (re-exported here as
//! [`k8s`], built for Kubernetes v1.33). On top of them this crate holds what
//! every component needs to agree on:
//!
//! - [`registry`]: every built-in resource Skiff serves, with its group, version,
//!   kind, names, scope, verbs, subresources and the columns `kubectl get` prints;
//! - [`selector`]: label and field selectors (parse, print, match);
//! - [`quantity`]: `resource.Quantity` with exact arithmetic;
//! - [`validation`]: upstream-shaped field errors for metadata and workload specs;
//! - [`defaults`]: the defaulting upstream applies to the fields components rely on.
#![forbid(unsafe_code)]

pub use k8s_openapi as k8s;

pub mod defaults;
pub mod duration;
pub mod protobuf;
pub mod quantity;
pub mod registry;
pub mod selector;
pub mod validation;
