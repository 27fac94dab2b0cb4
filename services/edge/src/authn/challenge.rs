//! The responses that refuse a request: challenges (RFC 3261 §22.1, RFC
//! 8898, RFC 6750) and 400s for malformed credentials.

use auth::{AuthError, BearerValidator};
use sip::{Challenge, HeaderName, Request, Response};

use super::{Policy, Schemes};

impl Policy {
    /// 401 with a challenge per accepted scheme: Digest first, then Bearer
    /// carrying `bearer_error` when a token was refused.
    pub(super) fn unauthorized(
        &self,
        request: &Request,
        schemes: Schemes,
        bearer_error: Option<&AuthError>,
        stale: bool,
    ) -> Box<Response> {
        let mut builder = Response::for_request(request, 401);
        if schemes.digest {
            if let Some(digest) = &self.digest {
                for challenge in digest.challenges(stale) {
                    builder = builder.header(
                        HeaderName::WwwAuthenticate,
                        Challenge::Digest {
                            realm: challenge.realm,
                            nonce: challenge.nonce,
                            opaque: Some(challenge.opaque),
                            algorithm: Some(challenge.algorithm.name().to_owned()),
                            qop: Some(challenge.qop.to_owned()),
                            stale: challenge.stale,
                        },
                    );
                }
            }
        }
        if schemes.bearer {
            if let Some(validator) = &self.bearer {
                builder = builder.header(
                    HeaderName::WwwAuthenticate,
                    bearer_challenge(validator, request.method().as_str(), bearer_error),
                );
            }
        }
        with_to_tag(builder)
    }

    /// 400 for credentials that cannot be read; with a Bearer challenge
    /// (`error="invalid_request"`, RFC 6750 §3.1) where tokens are accepted.
    pub(super) fn malformed(
        &self,
        request: &Request,
        schemes: Schemes,
        error: &AuthError,
    ) -> Box<Response> {
        let mut builder =
            Response::for_request(request, 400).reason("Malformed Authorization Header");
        if let (true, Some(validator)) = (schemes.bearer, &self.bearer) {
            builder = builder.header(
                HeaderName::WwwAuthenticate,
                bearer_challenge(validator, request.method().as_str(), Some(error)),
            );
        }
        with_to_tag(builder)
    }
}

/// The RFC 6750 challenge for `method`: realm, the scope the method needs,
/// the authorization server, and the error when a token was refused.
pub(super) fn bearer_challenge(
    validator: &BearerValidator,
    method: &str,
    error: Option<&AuthError>,
) -> Challenge {
    let c = validator.challenge_for_method(method, error);
    Challenge::Bearer {
        realm: c.realm,
        scope: c.scope,
        authz_server: c.authz_server,
        error: c.error.map(str::to_owned),
        error_description: c.error_description,
    }
}

/// RFC 3261 §8.2.6.2: a final response carries a To tag.
pub(super) fn with_to_tag(builder: sip::ResponseBuilder) -> Box<Response> {
    Box::new(
        builder
            .to_tag(&hex::encode(rand::random::<[u8; 8]>()))
            .build(),
    )
}
