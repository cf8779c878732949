//! Authentication (being written): who a request comes from. Today only
//! client certificates (verified during the TLS handshake) identify a user;
//! everyone else is anonymous.

use http::HeaderMap;

use crate::Api;
use crate::server::User;
use crate::status::ApiError;

/// Authentication settings, from kube-apiserver's flags.
#[derive(Clone, Debug, Default)]
pub struct AuthnConfig {
    /// `--token-auth-file`: upstream's static token CSV.
    pub token_auth_file: Option<std::path::PathBuf>,
}

/// Authenticates requests.
pub struct Authenticator {
    _config: AuthnConfig,
}

impl Authenticator {
    pub fn new(config: AuthnConfig) -> Result<Authenticator, String> {
        Ok(Authenticator { _config: config })
    }

    /// The request's user: the client certificate's, a bearer token's, or
    /// `None` for an anonymous request. A presented but invalid credential is
    /// a 401.
    pub async fn authenticate(
        &self,
        _api: &Api,
        _headers: &HeaderMap,
        cert_user: Option<&User>,
    ) -> Result<Option<User>, ApiError> {
        Ok(cert_user.cloned())
    }
}
