//! The credentials of an `authorization` header: `Basic user:password` (base64 with or
//! without padding: Java pads, Go does not) or `Bearer <token>`.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};

use super::Unauthenticated;

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
pub fn credentials(header: Option<&str>) -> Result<Credentials, Unauthenticated> {
    let Some(value) = header else {
        return Ok(Credentials::Anonymous);
    };
    let bad = |why: &str| Unauthenticated(format!("bad authorization header: {why}"));
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
}
