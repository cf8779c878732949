//! Watches of Services and EndpointSlices that keep the index current.
//! A (re)list is applied as one replacement, so a relist after a watch
//! gap also forgets objects deleted meanwhile.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::index::Index;

pub(crate) async fn services(client: Client, index: Arc<Index>) {
    let mut events = watcher(Api::<Service>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Option<Vec<Service>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(Vec::new()),
            Ok(watcher::Event::InitApply(svc)) => listing.get_or_insert_default().push(svc),
            Ok(watcher::Event::InitDone) => {
                index.replace_services(listing.take().unwrap_or_default());
                index.mark_services_synced();
            }
            Ok(watcher::Event::Apply(svc)) => index.apply_service(svc),
            Ok(watcher::Event::Delete(svc)) => index.delete_service(&svc),
            Err(error) => tracing::warn!(%error, "watching Services"),
        }
    }
}

pub(crate) async fn endpoint_slices(client: Client, index: Arc<Index>) {
    let mut events = watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut listing: Option<Vec<EndpointSlice>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(Vec::new()),
            Ok(watcher::Event::InitApply(slice)) => listing.get_or_insert_default().push(slice),
            Ok(watcher::Event::InitDone) => {
                index.replace_slices(listing.take().unwrap_or_default());
                index.mark_slices_synced();
            }
            Ok(watcher::Event::Apply(slice)) => index.apply_slice(slice),
            Ok(watcher::Event::Delete(slice)) => index.delete_slice(&slice),
            Err(error) => tracing::warn!(%error, "watching EndpointSlices"),
        }
    }
}
