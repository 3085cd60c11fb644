//! `Handshake`: JDBC, ADBC and Grafana log in through it and expect an
//! `authorization: Bearer <token>` header back.
//!
//! With authentication, Basic credentials log a user in (a session token comes back) and
//! a valid Bearer token is echoed; anything else is `UNAUTHENTICATED`. Without, any
//! caller is accepted with any or no credentials: a Bearer token presented is echoed,
//! anyone else gets a fresh token (which later calls may carry; it is not checked).
//! Basic credentials decode with or without base64 padding (Java pads, Go does not).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::auth::{Authenticator, Unauthenticated};

/// Standard base64 that accepts input with or without padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials a caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// None.
    Anonymous,
    /// `Basic user:password`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// `Bearer <token>`.
    Bearer(String),
}

/// The credentials of an `authorization` header value.
pub fn credentials(header: Option<&str>) -> Result<Credentials, Status> {
    let Some(value) = header else {
        return Ok(Credentials::Anonymous);
    };
    let bad = |why: &str| Status::unauthenticated(format!("bad authorization header: {why}"));
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("no scheme"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let decoded = LENIENT
                .decode(rest.trim())
                .map_err(|e| bad(&format!("Basic credentials are not base64: {e}")))?;
            let text =
                String::from_utf8(decoded).map_err(|_| bad("Basic credentials are not UTF-8"))?;
            let (user, password) = text
                .split_once(':')
                .ok_or_else(|| bad("Basic credentials are not user:password"))?;
            Ok(Credentials::Basic {
                user: user.into(),
                password: password.into(),
            })
        }
        "bearer" => Ok(Credentials::Bearer(rest.trim().to_string())),
        _ => Err(bad("use Basic or Bearer")),
    }
}

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
    match credentials(header)? {
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

    #[test]
    fn basic_decodes_with_and_without_padding() {
        let want = Credentials::Basic {
            user: "ab".into(),
            password: "c".into(),
        };
        // "ab:c" is YWI6Yw== padded.
        assert_eq!(credentials(Some("Basic YWI6Yw==")).unwrap(), want);
        assert_eq!(credentials(Some("Basic YWI6Yw")).unwrap(), want);
        assert_eq!(
            credentials(Some("Bearer t0k")).unwrap(),
            Credentials::Bearer("t0k".into())
        );
        assert!(credentials(Some("Basic !!!")).is_err());
        assert_eq!(credentials(None).unwrap(), Credentials::Anonymous);
    }

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
