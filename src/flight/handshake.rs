//! `Handshake`: JDBC, ADBC and Grafana log in through it and expect an
//! `authorization: Bearer <token>` header back.
//!
//! With authentication, Basic credentials log a user in (a session token comes back) and
//! a valid Bearer token is echoed; anything else is `UNAUTHENTICATED`. Without, any
//! caller is accepted with any or no credentials: a Bearer token presented is echoed,
//! anyone else gets a fresh token (which later calls may carry; it is not checked).
//! (`auth::credentials` reads the header.)

use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::auth::{credentials, Authenticator, Credentials, Unauthenticated};

/// The token a handshake answers with.
pub(crate) async fn token(
    auth: Option<&Authenticator>,
    metadata: &MetadataMap,
) -> Result<String, Status> {
    let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
    let Some(auth) = auth else {
        // No authentication is configured: whatever the credentials, even malformed
        // ones, the caller is accepted; a Bearer token presented is echoed.
        return Ok(match credentials(header) {
            Ok(Credentials::Bearer(token)) => token,
            _ => uuid::Uuid::new_v4().simple().to_string(),
        });
    };
    let refused = |e: Unauthenticated| Status::unauthenticated(e.0);
    match credentials(header).map_err(refused)? {
        Credentials::Basic { user, password } => {
            auth.login(&user, &password).await.map_err(refused)
        }
        Credentials::Bearer(token) => auth.bearer(&token).map(|_| token).map_err(refused),
        Credentials::Anonymous => Err(Status::unauthenticated(
            "log in with Basic credentials (user and password) or present a Bearer token",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn any_credentials_get_a_token_when_no_authentication_is_configured() {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", "Basic !!!".parse().unwrap());
        assert!(!token(None, &metadata).await.unwrap().is_empty());
        metadata.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(token(None, &metadata).await.unwrap(), "abc");
        assert!(!token(None, &MetadataMap::new()).await.unwrap().is_empty());
    }
}
