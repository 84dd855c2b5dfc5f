//! Authentication of Segment's requests, fail closed (segment-delivery §1.1–§1.2):
//! `X-Signature` (lower-case hex HMAC-SHA1 of the signed bytes with the shared secret) and/or
//! `Authorization: Bearer <token>`. Every configured method must pass; each may hold several
//! accepted values (current and previous, for rotation). Comparisons are constant-time; header
//! names are case-insensitive.
//!
//! Credentials are checked before any work on the body: the bearer token from its header
//! alone, the signature over the signed bytes, found in place (`body::signed_part`: an array's
//! first element is located without reading the others into memory). Only an authenticated
//! body is split into messages.
//!
//! Segment signs a batched request with its **first event only**, so a signature cannot vouch
//! for the others: anyone who saw one signed request could append events to it. A body of more
//! than one event that only a signature vouches for is refused unless the operator opted in
//! (`ALLOW_SIGNED_BATCHES=true`).

use hmac::{Hmac, Mac};

use super::body;
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The credentials a function checks, from its ingest secret.
#[derive(Clone, Copy, Default)]
pub struct AuthConfig<'k> {
    pub shared_secrets: &'k [SecretString],
    pub bearer_tokens: &'k [SecretString],
    /// `ALLOW_UNAUTHENTICATED=true`: accept requests with no credentials at all.
    pub allow_unauthenticated: bool,
    /// `ALLOW_SIGNED_BATCHES=true`: accept batches vouched for by their first event's signature.
    pub allow_signed_batches: bool,
}

/// What a request offers to be checked.
pub struct Presented<'a> {
    /// Header lookup (case-insensitive).
    pub header: &'a (dyn Fn(&str) -> Option<&'a str> + Sync),
    /// The raw body.
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A server-side mistake, not the caller's: answered 500 so Segment retries.
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
    #[error(
        "a batch of several events is signed by its first event only, so the signature cannot vouch for the others: batches need the bearer token (set bearer_token in the ingest secret and send it in an Authorization header), or ALLOW_SIGNED_BATCHES=true"
    )]
    SignedBatch,
    #[error(
        "listing deletion jobs needs the operator token (operator_token in the privacy secret) as Authorization: Bearer"
    )]
    OperatorTokenRequired,
}

impl AuthConfig<'_> {
    /// Checks a request.
    pub fn check(&self, p: &Presented<'_>) -> Result<(), AuthError> {
        if self.shared_secrets.is_empty() && self.bearer_tokens.is_empty() {
            return if self.allow_unauthenticated {
                Ok(())
            } else {
                Err(AuthError::NotConfigured)
            };
        }
        if !self.bearer_tokens.is_empty() {
            bearer(p.header, self.bearer_tokens, AuthError::MissingBearer)?;
        }
        if !self.shared_secrets.is_empty() {
            let given = (p.header)("x-signature").ok_or(AuthError::MissingSignature)?;
            let given = hex::decode(given.trim()).map_err(|_| AuthError::BadSignature)?;
            let signed = body::signed_part(p.body);
            if !self
                .shared_secrets
                .iter()
                .any(|s| signature_matches(s, signed.bytes, &given))
            {
                return Err(AuthError::BadSignature);
            }
            let vouches_for_all = signed.covers_body || signed.events <= 1;
            if self.bearer_tokens.is_empty() && !vouches_for_all && !self.allow_signed_batches {
                return Err(AuthError::SignedBatch);
            }
        }
        Ok(())
    }
}

/// The token of the request's `Authorization: Bearer <token>` header (trimmed; the scheme in
/// any case, as HTTP's are), if it presents one: none without the header, with another scheme
/// (`Basic …`) or with an empty token. A request without one can pass no bearer check,
/// whatever the secret holds.
pub fn bearer_token<'a>(header: &'a (dyn Fn(&str) -> Option<&'a str> + Sync)) -> Option<&'a str> {
    let given = header("authorization")?;
    let scheme = given.get(..7)?;
    let token = given.get(7..)?.trim();
    (scheme.eq_ignore_ascii_case("bearer ") && !token.is_empty()).then_some(token)
}

/// Checks `Authorization: Bearer <token>` against the accepted tokens.
pub fn bearer<'a>(
    header: &'a (dyn Fn(&str) -> Option<&'a str> + Sync),
    tokens: &[SecretString],
    missing: AuthError,
) -> Result<(), AuthError> {
    let given = bearer_token(header).ok_or(missing)?;
    let matches = tokens.iter().fold(false, |found, t| {
        let eq: bool = given.as_bytes().ct_eq(t.expose_secret().as_bytes()).into();
        found | eq
    });
    if matches {
        Ok(())
    } else {
        Err(AuthError::BadBearer)
    }
}

fn signature_matches(secret: &SecretString, signed: &[u8], given: &[u8]) -> bool {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(signed);
    mac.verify_slice(given).is_ok()
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

    /// Secrets leaked on purpose: the config borrows them, and tests are short-lived.
    fn config(secrets: &[&str], tokens: &[&str]) -> AuthConfig<'static> {
        let list = |v: &[&str]| -> &'static [SecretString] {
            v.iter()
                .map(|s| SecretString::from(s.to_string()))
                .collect::<Vec<_>>()
                .leak()
        };
        AuthConfig {
            shared_secrets: list(secrets),
            bearer_tokens: list(tokens),
            ..AuthConfig::default()
        }
    }

    fn check(c: &AuthConfig, pairs: &[(&str, &str)], body: &[u8]) -> Result<(), AuthError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let header = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        c.check(&Presented {
            header: &header,
            body,
        })
    }

    #[test]
    fn signature_is_hmac_sha1_hex_of_the_signed_bytes() {
        // Known vector: HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
        let c = config(&["key"], &[]);
        let body = b"{\"type\":\"track\"}";
        let good = sign("key", body);
        assert_eq!(check(&c, &[("X-Signature", &good)], body), Ok(()));
        assert_eq!(
            check(&c, &[("x-signature", &sign("other", body))], body),
            Err(AuthError::BadSignature)
        );
        assert_eq!(check(&c, &[], body), Err(AuthError::MissingSignature));
        assert_eq!(
            check(&c, &[("X-Signature", "zz")], body),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn rotation_accepts_the_previous_secret_and_token() {
        let c = config(&["new", "old"], &[]);
        let body = b"{}";
        assert_eq!(
            check(&c, &[("X-Signature", &sign("old", body))], body),
            Ok(())
        );
        let t = config(&[], &["t-new", "t-old"]);
        assert_eq!(
            check(&t, &[("Authorization", "Bearer t-old")], body),
            Ok(())
        );
    }

    #[test]
    fn bearer_token_and_both_methods() {
        let c = config(&["key"], &["tok"]);
        let body = b"{}";
        let sig = sign("key", body);
        assert_eq!(
            check(
                &c,
                &[("X-Signature", &sig), ("Authorization", "Bearer tok")],
                body
            ),
            Ok(())
        );
        assert_eq!(
            check(&c, &[("X-Signature", &sig)], body),
            Err(AuthError::MissingBearer)
        );
        assert_eq!(
            check(
                &c,
                &[("X-Signature", &sig), ("authorization", "Bearer nope")],
                body
            ),
            Err(AuthError::BadBearer)
        );
    }

    #[test]
    fn a_signature_alone_cannot_vouch_for_appended_events() {
        let c = config(&["key"], &[]);
        let first = r#"{"type":"track"}"#;
        let sig = sign("key", first.as_bytes());
        let appended = format!(r#"[{first}, {{"type":"track","event":"forged"}}]"#);
        assert_eq!(
            check(&c, &[("X-Signature", &sig)], appended.as_bytes()),
            Err(AuthError::SignedBatch)
        );
        // One event in an array, or a body the signature covers whole, is fine.
        let alone = format!("[{first}]");
        assert_eq!(
            check(&c, &[("X-Signature", &sig)], alone.as_bytes()),
            Ok(())
        );
        let batch = format!(r#"{{"batch": [{first}, {first}]}}"#);
        let whole = sign("key", batch.as_bytes());
        assert_eq!(
            check(&c, &[("X-Signature", &whole)], batch.as_bytes()),
            Ok(())
        );
        let opted_in = AuthConfig {
            allow_signed_batches: true,
            ..c
        };
        assert_eq!(
            check(&opted_in, &[("X-Signature", &sig)], appended.as_bytes()),
            Ok(())
        );
        let with_token = config(&["key"], &["tok"]);
        assert_eq!(
            check(
                &with_token,
                &[("X-Signature", &sig), ("Authorization", "Bearer tok")],
                appended.as_bytes()
            ),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_bearer_is_refused_before_the_body_is_read() {
        let c = config(&["key"], &["tok"]);
        // Not JSON at all: the bearer decides first.
        assert_eq!(
            check(&c, &[("Authorization", "Bearer nope")], b"[{oops"),
            Err(AuthError::BadBearer)
        );
    }

    /// The token a request presents, which decides whether a refusal can be final (no token:
    /// no rotated secret could let it pass).
    #[test]
    fn bearer_token_is_the_trimmed_token_of_a_bearer_header_only() {
        let token = |value: Option<&'static str>| {
            let header = move |name: &str| value.filter(|_| name == "authorization");
            bearer_token(&header).map(str::to_owned)
        };
        let cases = [
            (None, None),
            (Some("Basic dG9rOg=="), None),
            (Some("Bearer"), None),
            (Some("Bearer    "), None),
            (Some("Bearertok"), None),
            (Some("Bearer tok"), Some("tok")),
            (Some("BEARER tok"), Some("tok")),
            (Some("bearer  tok "), Some("tok")),
        ];
        for (value, expected) in cases {
            assert_eq!(token(value).as_deref(), expected, "{value:?}");
        }
    }

    #[test]
    fn fail_closed_unless_explicitly_opted_out() {
        assert_eq!(
            check(&config(&[], &[]), &[], b"{}"),
            Err(AuthError::NotConfigured)
        );
        let open = AuthConfig {
            allow_unauthenticated: true,
            ..AuthConfig::default()
        };
        assert_eq!(check(&open, &[], b"{}"), Ok(()));
    }
}
