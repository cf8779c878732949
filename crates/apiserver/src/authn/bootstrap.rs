//! Bootstrap tokens (`--enable-bootstrap-token-auth`): `<id>.<secret>`
//! matched against the `kube-system` Secret `bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`, so a new node can join with a token
//! (upstream's plugin/pkg/auth/authenticator/token/bootstrap). The Secret is
//! read from the watch cache.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use skiff_api_types::registry::ResourceInfo;
use tracing::debug;

use crate::cache::Cache;
use crate::server::User;

const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
const NAME_PREFIX: &str = "bootstrap-token-";
const USER_PREFIX: &str = "system:bootstrap:";
const DEFAULT_GROUP: &str = "system:bootstrappers";

/// The parts of a bootstrap token Secret that matter here.
#[derive(Deserialize)]
struct Secret {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(rename = "deletionTimestamp")]
    deletion_timestamp: Option<String>,
}

/// Splits a bootstrap token into its id and secret: `[a-z0-9]{6}.[a-z0-9]{16}`.
pub(crate) fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// The user a bootstrap token names, if its Secret accepts it at `now`.
pub(crate) fn authenticate(
    cache: &Cache,
    secrets: &ResourceInfo,
    token: &str,
    now: jiff::Timestamp,
) -> Option<User> {
    let (id, secret) = parse(token)?;
    let name = format!("{NAME_PREFIX}{id}");
    let Some(obj) = cache.get(secrets, &secrets.key(Some("kube-system"), &name)) else {
        debug!(secret = %name, "no Secret matches the bootstrap token");
        return None;
    };
    let stored: Secret = serde_json::from_slice(&obj.raw).ok()?;
    match check(&stored, id, secret, now) {
        Ok(user) => Some(user),
        Err(why) => {
            debug!(secret = %name, why, "bootstrap Secret refuses the token");
            None
        }
    }
}

/// Upstream's checks, in its order.
fn check(s: &Secret, id: &str, secret: &str, now: jiff::Timestamp) -> Result<User, &'static str> {
    if s.metadata.deletion_timestamp.is_some() {
        return Err("deleted and awaiting removal");
    }
    if s.type_ != SECRET_TYPE {
        return Err("not of type bootstrap.kubernetes.io/token");
    }
    let data = |key: &str| -> String {
        s.data
            .get(key)
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default()
    };
    if !constant_time_eq(data("token-secret").as_bytes(), secret.as_bytes()) {
        return Err("token-secret does not match");
    }
    if data("token-id") != id {
        return Err("token-id does not match");
    }
    let expiration = data("expiration");
    if !expiration.is_empty() {
        match expiration.parse::<jiff::Timestamp>() {
            Ok(at) if now < at => {}
            Ok(_) => return Err("expired"),
            Err(_) => return Err("unparsable expiration"),
        }
    }
    if data("usage-bootstrap-authentication") != "true" {
        return Err("not marked usage-bootstrap-authentication=true");
    }
    let mut groups = vec![DEFAULT_GROUP.to_owned()];
    let extra = data("auth-extra-groups");
    if !extra.is_empty() {
        for group in extra.split(',') {
            if !valid_group(group) {
                return Err("invalid auth-extra-groups");
            }
            groups.push(group.to_owned());
        }
    }
    groups.sort();
    groups.dedup();
    Ok(User {
        name: format!("{USER_PREFIX}{id}"),
        groups,
        ..User::default()
    })
}

/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
fn valid_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let Some((last, body)) = bytes.split_last() else {
        return false;
    };
    body.len() <= 255
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && body
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'-'))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(extra: &[(&str, &str)]) -> Secret {
        let mut data = serde_json::Map::new();
        for (k, v) in [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
        ]
        .iter()
        .chain(extra)
        {
            data.insert((*k).into(), json!(b64(v)));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": SECRET_TYPE,
            "data": data,
        }))
        .unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn only_well_formed_tokens_are_parsed() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef0123456789abcdef",
            "abcde.f0123456789abcdef",
            "a.b.c",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_matching_secret_names_the_bootstrap_user_and_its_groups() {
        let s = secret(&[(
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token",
        )]);
        let user = check(&s, "abcdef", "0123456789abcdef", now()).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token"
            ]
        );
    }

    #[test]
    fn a_wrong_secret_an_expiry_or_a_missing_usage_refuses_the_token() {
        let s = secret(&[]);
        assert!(check(&s, "abcdef", "0123456789abcdee", now()).is_err());
        let s = secret(&[("expiration", "2029-12-31T23:59:59Z")]);
        assert_eq!(
            check(&s, "abcdef", "0123456789abcdef", now()).unwrap_err(),
            "expired"
        );
        let s = secret(&[("expiration", "2030-01-01T00:00:01Z")]);
        assert!(check(&s, "abcdef", "0123456789abcdef", now()).is_ok());
        let s = secret(&[("expiration", "tomorrow")]);
        assert!(check(&s, "abcdef", "0123456789abcdef", now()).is_err());
        let s = secret(&[("usage-bootstrap-authentication", "false")]);
        assert!(check(&s, "abcdef", "0123456789abcdef", now()).is_err());
        let s = secret(&[("auth-extra-groups", "system:masters")]);
        assert!(check(&s, "abcdef", "0123456789abcdef", now()).is_err());
        let mut s = secret(&[]);
        s.type_ = "Opaque".into();
        assert!(check(&s, "abcdef", "0123456789abcdef", now()).is_err());
    }
}
