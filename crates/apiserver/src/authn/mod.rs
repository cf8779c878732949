//! Authentication: who a request comes from, as upstream's authenticator
//! chain decides it (k8s.io/apiserver pkg/authentication):
//!
//! 1. a client certificate verified against the cluster CA during the TLS
//!    handshake (user = CN, groups = O);
//! 2. a bearer token (`Authorization: Bearer`, or the WebSocket
//!    `base64url.bearer.authorization.k8s.io.` protocol): the static token
//!    file, service-account JWTs ([`serviceaccount`]), bootstrap tokens
//!    ([`bootstrap`]);
//! 3. otherwise anonymous, when `--anonymous-auth` allows it.
//!
//! A presented credential that no authenticator accepts is a 401 — upstream
//! never falls back to anonymous then. Everyone authenticated is also in
//! `system:authenticated`.

mod bootstrap;
mod keys;
mod serviceaccount;
mod tokenfile;

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use http::HeaderMap;
use skiff_api_types::registry::{self, ResourceInfo};
use tracing::{debug, info};

use crate::Api;
use crate::server::User;
use crate::status::ApiError;

pub(crate) use serviceaccount::token_request;

/// Upstream's default `--service-account-issuer` for in-cluster tokens.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

const AUTHENTICATED: &str = "system:authenticated";
const WEBSOCKET_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// Authentication settings, from kube-apiserver's flags.
#[derive(Clone, Debug)]
pub struct AuthnConfig {
    /// `--token-auth-file`: upstream's static token CSV.
    pub token_auth_file: Option<PathBuf>,
    /// `--service-account-key-file`: PEM files of keys that verify
    /// service-account tokens (public or private keys, certificates).
    /// The signing key's public half is always accepted too.
    pub service_account_key_files: Vec<PathBuf>,
    /// `--service-account-signing-key-file`: the private key that signs
    /// service-account tokens (default: `pki/sa.key`, generated).
    pub service_account_signing_key_file: Option<PathBuf>,
    /// `--service-account-issuer`: the first is written into issued tokens,
    /// all are accepted.
    pub service_account_issuers: Vec<String>,
    /// `--api-audiences` (default: the issuers).
    pub api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration`: longer requests are
    /// shortened to this.
    pub service_account_max_token_expiration: Option<Duration>,
    /// `--service-account-extend-token-expiration`: the kubelet's projected
    /// tokens (3607 s, pod-bound) last a year and warn after their hour.
    pub service_account_extend_token_expiration: bool,
    /// `--anonymous-auth`: requests without credentials are
    /// `system:anonymous` (else 401).
    pub anonymous_auth: bool,
    /// `--enable-bootstrap-token-auth`.
    pub enable_bootstrap_token_auth: bool,
}

impl Default for AuthnConfig {
    fn default() -> Self {
        AuthnConfig {
            token_auth_file: None,
            service_account_key_files: Vec::new(),
            service_account_signing_key_file: None,
            service_account_issuers: vec![DEFAULT_ISSUER.to_owned()],
            api_audiences: Vec::new(),
            service_account_max_token_expiration: None,
            service_account_extend_token_expiration: true,
            anonymous_auth: true,
            enable_bootstrap_token_auth: false,
        }
    }
}

/// Authenticates requests.
pub struct Authenticator {
    anonymous: bool,
    /// The audiences the API itself answers to.
    api_audiences: Vec<String>,
    static_tokens: Option<tokenfile::TokenFile>,
    service_accounts: serviceaccount::ServiceAccounts,
    /// `kube-system` Secrets, when bootstrap tokens are enabled.
    bootstrap_secrets: Option<&'static ResourceInfo>,
}

impl Authenticator {
    /// Reads the token file and keys the configuration names.
    /// `generated_signing_key_pem` signs service-account tokens unless
    /// `--service-account-signing-key-file` names another key.
    pub fn new(
        config: &AuthnConfig,
        generated_signing_key_pem: &str,
    ) -> Result<Authenticator, String> {
        keys::install_provider();
        let read = |path: &PathBuf, what: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {what} {}: {e}", path.display()))
        };
        let static_tokens = config
            .token_auth_file
            .as_deref()
            .map(tokenfile::TokenFile::load)
            .transpose()?;

        let signing = match &config.service_account_signing_key_file {
            Some(path) => {
                let pem = read(path, "--service-account-signing-key-file")?;
                keys::signing_key(&pem).map_err(|e| {
                    format!("--service-account-signing-key-file {}: {e}", path.display())
                })?
            }
            None => keys::signing_key(generated_signing_key_pem)
                .map_err(|e| format!("the generated service account key: {e}"))?,
        };
        let mut verifying = Vec::new();
        for path in &config.service_account_key_files {
            let pem = read(path, "--service-account-key-file")?;
            verifying.extend(
                keys::public_keys(&pem)
                    .map_err(|e| format!("--service-account-key-file {}: {e}", path.display()))?,
            );
        }
        let issuers: Vec<String> = if config.service_account_issuers.is_empty() {
            vec![DEFAULT_ISSUER.to_owned()]
        } else {
            config.service_account_issuers.clone()
        };
        if issuers.iter().any(String::is_empty) {
            return Err("--service-account-issuer may not be empty".into());
        }
        let api_audiences = if config.api_audiences.is_empty() {
            issuers.clone()
        } else {
            config.api_audiences.clone()
        };
        let max_expiration = config
            .service_account_max_token_expiration
            .map(|d| d.as_secs() as i64);
        if max_expiration.is_some_and(|m| m < 600) {
            return Err("--service-account-max-token-expiration must be at least 10m".into());
        }
        info!(
            issuer = %issuers[0],
            key_id = %signing.public.kid,
            static_tokens = static_tokens.as_ref().map_or(0, |t| t.len()),
            bootstrap_tokens = config.enable_bootstrap_token_auth,
            anonymous = config.anonymous_auth,
            "authentication configured"
        );
        Ok(Authenticator {
            anonymous: config.anonymous_auth,
            api_audiences,
            static_tokens,
            service_accounts: serviceaccount::ServiceAccounts::new(
                issuers,
                signing,
                verifying,
                max_expiration,
                config.service_account_extend_token_expiration,
            ),
            bootstrap_secrets: config
                .enable_bootstrap_token_auth
                .then(|| registry::lookup("", "v1", "secrets").expect("secrets are registered")),
        })
    }

    /// The request's user: the client certificate's, a bearer token's, or
    /// `None` for an anonymous request. A presented but invalid credential is
    /// a 401, as is a request without credentials when anonymous requests
    /// are disabled.
    pub async fn authenticate(
        &self,
        api: &Api,
        headers: &HeaderMap,
        cert_user: Option<&User>,
    ) -> Result<Option<User>, ApiError> {
        if let Some(user) = cert_user {
            return Ok(Some(user.clone()));
        }
        let token = match bearer_token(headers) {
            Some(token) => Some(Cow::Borrowed(token)),
            None => websocket_token(headers).map(Cow::Owned),
        };
        match token {
            Some(token) => match self.authenticate_token(api, &token, &[]).await? {
                Some((user, _)) => Ok(Some(user)),
                None => Err(ApiError::unauthorized()),
            },
            None if self.anonymous => Ok(None),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// Authenticates a bearer token for `audiences` (empty: the API's own),
    /// as TokenReview does: the user and the audiences the token is valid
    /// for among those asked, or `None` when no authenticator accepts it.
    pub async fn authenticate_token(
        &self,
        api: &Api,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<(User, Vec<String>)>, ApiError> {
        let audiences = if audiences.is_empty() {
            &self.api_audiences[..]
        } else {
            audiences
        };
        if let Some(user) = self.static_tokens.as_ref().and_then(|t| t.get(token)) {
            return Ok(self.audience_agnostic(user.clone(), audiences));
        }
        match self
            .service_accounts
            .authenticate(api, token, audiences)
            .await
        {
            Ok(Some((user, audiences))) => return Ok(Some((user, audiences))),
            Ok(None) => {}
            Err(why) => {
                debug!(why, "service account token refused");
                return Ok(None);
            }
        }
        if let Some(secrets) = self.bootstrap_secrets
            && let Some(user) =
                bootstrap::authenticate(&api.cache, secrets, token, jiff::Timestamp::now())
        {
            return Ok(self.audience_agnostic(user, audiences));
        }
        Ok(None)
    }

    /// Upstream's audience-agnostic wrapper for authenticators whose tokens
    /// name no audience: valid for the asked audiences the API answers to,
    /// and for nothing else.
    fn audience_agnostic(&self, user: User, audiences: &[String]) -> Option<(User, Vec<String>)> {
        let matched: Vec<String> = self
            .api_audiences
            .iter()
            .filter(|a| audiences.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return None;
        }
        Some((with_authenticated(user), matched))
    }
}

/// Adds `system:authenticated` (upstream's AuthenticatedGroupAdder).
fn with_authenticated(mut user: User) -> User {
    if !user.groups.iter().any(|g| g == AUTHENTICATED) {
        user.groups.push(AUTHENTICATED.to_owned());
    }
    user
}

/// `Authorization: Bearer <token>` (the scheme in any case); an empty token
/// is no token.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The token of a WebSocket upgrade that carries it as the
/// `base64url.bearer.authorization.k8s.io.<token>` subprotocol (browsers
/// cannot set headers). A malformed one is an empty, invalid token.
fn websocket_token(headers: &HeaderMap) -> Option<String> {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WEBSOCKET_PROTOCOL_PREFIX))
        .map(|encoded| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .ok()
                .and_then(|t| String::from_utf8(t).ok())
                .unwrap_or_default()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_bearer_token_is_read_from_the_authorization_header() {
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer abc extra")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic YTpi")])),
            None
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer  abc")])),
            None
        );
        assert_eq!(bearer_token(&headers(&[])), None);
    }

    #[test]
    fn a_websocket_upgrade_may_carry_the_token_as_a_subprotocol() {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("abc");
        let h = headers(&[
            ("upgrade", "websocket"),
            (
                "sec-websocket-protocol",
                &format!("v5.channel.k8s.io, {WEBSOCKET_PROTOCOL_PREFIX}{encoded}"),
            ),
        ]);
        assert_eq!(websocket_token(&h).as_deref(), Some("abc"));
        let h = headers(&[(
            "sec-websocket-protocol",
            &format!("{WEBSOCKET_PROTOCOL_PREFIX}{encoded}"),
        )]);
        assert_eq!(websocket_token(&h), None, "not an upgrade");
    }

    #[test]
    fn authenticated_users_are_in_system_authenticated_once() {
        let user = with_authenticated(User {
            name: "alice".into(),
            groups: vec!["dev".into()],
            ..User::default()
        });
        assert_eq!(user.groups, ["dev", AUTHENTICATED]);
        assert_eq!(with_authenticated(user).groups, ["dev", AUTHENTICATED]);
    }

    #[test]
    fn bad_key_files_and_issuers_are_refused_at_start() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a key").unwrap();
        let config = AuthnConfig {
            service_account_key_files: vec![junk.clone()],
            ..AuthnConfig::default()
        };
        let e = Authenticator::new(&config, &key).err().unwrap();
        assert!(e.contains("--service-account-key-file"), "{e}");
        let config = AuthnConfig {
            service_account_signing_key_file: Some(dir.path().join("missing.key")),
            ..AuthnConfig::default()
        };
        let e = Authenticator::new(&config, &key).err().unwrap();
        assert!(e.contains("missing.key"), "{e}");
        let config = AuthnConfig {
            service_account_issuers: vec![String::new()],
            ..AuthnConfig::default()
        };
        assert!(Authenticator::new(&config, &key).is_err());
        assert!(Authenticator::new(&AuthnConfig::default(), &key).is_ok());
    }
}
