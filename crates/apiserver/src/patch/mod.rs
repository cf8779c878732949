//! Patches and field ownership: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386), strategic merge patch, and server-side apply with
//! `managedFields`.

mod apply;
mod fieldpath;
mod managed;
pub(crate) mod meta;
mod strategic;
mod typed;

use serde_json::Value;
use skiff_api_types::registry::ResourceInfo;

use crate::status::ApiError;

#[allow(unused_imports)] // for the REST layer's subresource applies
pub(crate) use apply::apply_subresource;
pub(crate) use apply::track_update;

/// The patch types a PATCH may carry (server-side apply aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
}

/// Applies a patch to `current`, answering the patched object.
pub(crate) fn patch(
    kind: PatchKind,
    resource: &ResourceInfo,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is not valid: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| unprocessable(e.to_string()))?;
            Ok(doc)
        }
        PatchKind::Merge => {
            let patch = patch_object(body)?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchKind::Strategic => {
            let patch = patch_object(body)?;
            strategic::merge(resource, current, &patch)
        }
    }
}

fn patch_object(body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("the patch must be a JSON object"));
    }
    Ok(patch)
}

/// A patch that is well-formed but cannot be applied: 422.
fn unprocessable(message: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message,
        details: None,
    }
}
