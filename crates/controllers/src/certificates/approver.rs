//! The CSR approving controller (upstream's csrapproving, sarapprove):
//! a pending `kubernetes.io/kube-apiserver-client-kubelet` request is
//! approved when it is a valid kubelet client request and a
//! SubjectAccessReview says its requester may create
//! `certificatesigningrequests/selfnodeclient` (a node renewing its own
//! certificate) or `certificatesigningrequests/nodeclient` (a bootstrap
//! token asking for a node's first one). Anything else is left for a human.

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use super::{KUBELET_CLIENT, check_kubelet_client, has_condition, parse};
use crate::cache::Changed;
use crate::framework::{self, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "certificatesigningrequest-approving-controller";

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let (_cache, changes) = ctx.informers.certificate_signing_requests.subscribe(
            |c: &Changed<CertificateSigningRequest>| match c {
                Changed::Deleted(_) => None,
                c => Some(c.latest().clone()),
            },
        );
        let stopped = ctx.stopped();
        tokio::pin!(stopped, changes);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                Some(csr) = changes.next() => {
                    if let Err(e) = handle(&ctx.client, &csr).await {
                        warn!(csr = %csr.name_any(), error = %e, "approving the request failed");
                    }
                }
            }
        }
    })
}

/// Which permission a valid kubelet client request needs: a node renewing
/// its own certificate, or anyone asking for a node's.
pub(crate) fn subresources(
    csr: &CertificateSigningRequest,
    common_name: &str,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if csr.spec.username.as_deref() == Some(common_name) {
        out.push("selfnodeclient");
    }
    out.push("nodeclient");
    out
}

async fn handle(client: &Client, csr: &CertificateSigningRequest) -> Result<(), kube::Error> {
    if csr.spec.signer_name != KUBELET_CLIENT
        || has_condition(csr, "Approved")
        || has_condition(csr, "Denied")
        || csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some()
    {
        return Ok(());
    }
    let name = csr.name_any();
    let request = match parse(&csr.spec.request.0) {
        Ok(r) => r,
        Err(e) => {
            debug!(csr = %name, error = %e, "not approving: the request does not parse");
            return Ok(());
        }
    };
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if let Err(e) = check_kubelet_client(&request, &usages) {
        debug!(csr = %name, error = %e, "not approving: not a valid kubelet client request");
        return Ok(());
    }
    for sub in subresources(csr, &request.common_name) {
        if !authorized(client, csr, sub).await? {
            continue;
        }
        let mut approved = csr.clone();
        approved
            .status
            .get_or_insert_default()
            .conditions
            .get_or_insert_default()
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(
                    "Auto approving kubelet client certificate after SubjectAccessReview.".into(),
                ),
                last_update_time: Some(Time(Timestamp::now())),
                last_transition_time: Some(Time(Timestamp::now())),
            });
        let api: Api<CertificateSigningRequest> = Api::all(client.clone());
        let written = api
            .replace_subresource("approval", &name, &PostParams::default(), &approved)
            .await;
        match written {
            Ok(_) => {
                info!(csr = %name, user = ?csr.spec.username, via = sub, "approved the kubelet client certificate request")
            }
            Err(e) if framework::is_conflict(&e) || framework::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        return Ok(());
    }
    debug!(csr = %name, user = ?csr.spec.username, "not approving: the requester may not create nodeclient requests");
    Ok(())
}

/// Asks the API server whether the request's author may create
/// `certificatesigningrequests/<subresource>`.
async fn authorized(
    client: &Client,
    csr: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool, kube::Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            groups: csr.spec.groups.clone(),
            uid: csr.spec.uid.clone(),
            extra: csr.spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
