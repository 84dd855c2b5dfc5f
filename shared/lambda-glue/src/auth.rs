//! Authentication of Segment's requests, fail closed (segment-delivery §1.1–§1.2):
//! `X-Signature` (lower-case hex HMAC-SHA1 of the signed bytes with the shared secret) and/or
//! `Authorization: Bearer <token>`. Every configured method must pass. With none configured,
//! every request is refused unless the operator explicitly opted out (an API already protected
//! by IAM). Comparisons are constant-time; header names are case-insensitive.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The credentials a function checks, from its ingest secret.
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub shared_secret: Option<SecretString>,
    pub bearer_token: Option<SecretString>,
    /// `ALLOW_UNAUTHENTICATED=true`: accept requests with no credentials at all.
    pub allow_unauthenticated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no authentication is configured (set webhook_secret or bearer_token in the ingest secret)"
    )]
    NotConfigured,
    #[error("the X-Signature header is missing")]
    MissingSignature,
    #[error("the X-Signature header does not match the body")]
    BadSignature,
    #[error("the Authorization: Bearer header is missing")]
    MissingBearer,
    #[error("the bearer token is wrong")]
    BadBearer,
}

impl AuthConfig {
    /// Checks a request. `signed` is what the signature covers (see `body::Messages`).
    pub fn check(
        &self,
        header: impl Fn(&str) -> Option<String>,
        signed: &[u8],
    ) -> Result<(), AuthError> {
        if self.shared_secret.is_none() && self.bearer_token.is_none() {
            return if self.allow_unauthenticated {
                Ok(())
            } else {
                Err(AuthError::NotConfigured)
            };
        }
        if let Some(secret) = &self.shared_secret {
            let given = header("x-signature").ok_or(AuthError::MissingSignature)?;
            let given = hex::decode(given.trim()).map_err(|_| AuthError::BadSignature)?;
            let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(signed);
            mac.verify_slice(&given)
                .map_err(|_| AuthError::BadSignature)?;
        }
        if let Some(token) = &self.bearer_token {
            let given = header("authorization").ok_or(AuthError::MissingBearer)?;
            let given = given
                .strip_prefix("Bearer ")
                .or_else(|| given.strip_prefix("bearer "))
                .ok_or(AuthError::MissingBearer)?;
            let ok: bool = given
                .trim()
                .as_bytes()
                .ct_eq(token.expose_secret().as_bytes())
                .into();
            if !ok {
                return Err(AuthError::BadBearer);
            }
        }
        Ok(())
    }
}

/// The `X-Signature` Segment sends for these bytes (used by tests and the local runner's
/// example).
pub fn sign(secret: &str, signed: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signed);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: Option<&str>, bearer: Option<&str>) -> AuthConfig {
        AuthConfig {
            shared_secret: secret.map(|s| s.to_owned().into()),
            bearer_token: bearer.map(|s| s.to_owned().into()),
            allow_unauthenticated: false,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn signature_is_hmac_sha1_hex_of_the_signed_bytes() {
        // Known vector: HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
        let c = config(Some("key"), None);
        let body = b"{\"type\":\"track\"}";
        let good = sign("key", body);
        assert_eq!(c.check(headers(&[("X-Signature", &good)]), body), Ok(()));
        assert_eq!(
            c.check(headers(&[("x-signature", &sign("other", body))]), body),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            c.check(headers(&[]), body),
            Err(AuthError::MissingSignature)
        );
        assert_eq!(
            c.check(headers(&[("X-Signature", "zz")]), body),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn bearer_token_and_both_methods() {
        let c = config(Some("key"), Some("tok"));
        let body = b"{}";
        let sig = sign("key", body);
        assert_eq!(
            c.check(
                headers(&[("X-Signature", &sig), ("Authorization", "Bearer tok")]),
                body
            ),
            Ok(())
        );
        assert_eq!(
            c.check(headers(&[("X-Signature", &sig)]), body),
            Err(AuthError::MissingBearer)
        );
        assert_eq!(
            c.check(
                headers(&[("X-Signature", &sig), ("authorization", "Bearer nope")]),
                body
            ),
            Err(AuthError::BadBearer)
        );
    }

    #[test]
    fn fail_closed_unless_explicitly_opted_out() {
        assert_eq!(
            config(None, None).check(headers(&[]), b"{}"),
            Err(AuthError::NotConfigured)
        );
        let open = AuthConfig {
            allow_unauthenticated: true,
            ..AuthConfig::default()
        };
        assert_eq!(open.check(headers(&[]), b"{}"), Ok(()));
    }
}
