//! Checking a request's credentials against the policy: trusted peers'
//! asserted identities, bearer tokens and Digest responses.

use auth::{AuthError, AuthMethod, Identity};
use sip::{Authorization, HeaderName, Request, Response, Scheme};

use super::challenge::{bearer_challenge, with_to_tag};
use super::{Policy, Schemes, PROVIDER_RETRY_AFTER_SECS};
use crate::transport::Source;

/// Credentials picked from a request's Authorization headers.
enum Credentials {
    Bearer(String),
    Digest(Vec<(String, String)>),
}

impl Policy {
    pub(super) fn schemes_for(&self, source: &Source) -> Schemes {
        self.rules
            .iter()
            .find(|rule| rule.matches(source))
            .map_or(self.default_schemes, |rule| rule.schemes)
    }

    pub(super) async fn authenticate(
        &self,
        request: &Request,
        source: &Source,
    ) -> Result<Identity, Box<Response>> {
        let method = request.method().as_str();
        let remote = source.remote;
        if request.headers().contains(HeaderName::PAssertedIdentity) {
            if self.trusted_peers.is_trusted(remote.ip()) {
                match asserted_identity(request) {
                    Ok(Some(aor)) => {
                        tracing::debug!(%remote, %method, %aor, "identity asserted by a trusted peer");
                        return Ok(Identity {
                            aor: aor.clone(),
                            subject: aor,
                            scopes: Vec::new(),
                            client_id: None,
                            expires_at: None,
                            method: AuthMethod::TrustedPeer,
                        });
                    }
                    // Only a tel: identity: the request's own credentials decide.
                    Ok(None) => {}
                    Err(()) => {
                        tracing::info!(%remote, %method, "trusted peer sent an unparseable P-Asserted-Identity");
                        return Err(with_to_tag(
                            Response::for_request(request, 400).reason("Bad P-Asserted-Identity"),
                        ));
                    }
                }
            } else {
                // RFC 3325 §5: only a trusted peer can assert an identity.
                tracing::debug!(%remote, %method, "P-Asserted-Identity from an untrusted source ignored");
            }
        }
        let schemes = self.schemes_for(source);
        if schemes.is_deny() {
            tracing::info!(%remote, %method, "request refused: no credentials are accepted from this source");
            return Err(with_to_tag(
                Response::for_request(request, 403).reason("Not Accepted From This Network"),
            ));
        }
        match self.credentials(request, source, schemes) {
            Err(response) => Err(response),
            Ok(None) => {
                tracing::debug!(%remote, %method, "no usable credentials; challenging");
                Err(self.unauthorized(request, schemes, None, false))
            }
            Ok(Some(Credentials::Bearer(token))) => {
                self.check_bearer(request, source, schemes, &token).await
            }
            Ok(Some(Credentials::Digest(params))) => {
                self.check_digest(request, source, schemes, &params)
            }
        }
    }

    /// The first Authorization header of a scheme this source may use (for
    /// Digest, of this realm); a malformed one is answered 400.
    fn credentials(
        &self,
        request: &Request,
        source: &Source,
        schemes: Schemes,
    ) -> Result<Option<Credentials>, Box<Response>> {
        for line in request.headers().lines(&HeaderName::Authorization) {
            let parsed = match line.parse::<Authorization>() {
                Ok(parsed) => parsed,
                Err(_) => {
                    tracing::info!(remote = %source.remote, method = %request.method(), "malformed Authorization header");
                    return Err(self.malformed(
                        request,
                        schemes,
                        &AuthError::Malformed("unparseable Authorization header".to_owned()),
                    ));
                }
            };
            match parsed {
                Authorization::Bearer(token) if schemes.bearer => {
                    return Ok(Some(Credentials::Bearer(token)))
                }
                Authorization::Digest(params) if schemes.digest => {
                    let ours = self.digest.as_ref().is_some_and(|digest| {
                        params
                            .iter()
                            .any(|(n, v)| n.eq_ignore_ascii_case("realm") && v == digest.realm())
                    });
                    if ours {
                        return Ok(Some(Credentials::Digest(params)));
                    }
                }
                // Schemes not accepted from this source, and other realms,
                // are not ours to judge.
                _ => {}
            }
        }
        Ok(None)
    }

    async fn check_bearer(
        &self,
        request: &Request,
        source: &Source,
        schemes: Schemes,
        token: &str,
    ) -> Result<Identity, Box<Response>> {
        let Some(validator) = &self.bearer else {
            return Err(self.unauthorized(request, schemes, None, false));
        };
        let method = request.method().as_str();
        let checked = match validator.validate(token).await {
            Ok(identity) => validator.authorize(&identity, method).map(|()| identity),
            Err(error) => Err(error),
        };
        checked.map_err(|error| {
            tracing::info!(remote = %source.remote, %method, %error, "bearer token refused");
            match error.sip_status() {
                401 => self.unauthorized(request, schemes, Some(&error), false),
                400 => self.malformed(request, schemes, &error),
                403 => with_to_tag(Response::for_request(request, 403).header(
                    HeaderName::WwwAuthenticate,
                    bearer_challenge(validator, method, Some(&error)),
                )),
                503 => with_to_tag(
                    Response::for_request(request, 503)
                        .header(HeaderName::RetryAfter, PROVIDER_RETRY_AFTER_SECS),
                ),
                status => with_to_tag(Response::for_request(request, status)),
            }
        })
    }

    fn check_digest(
        &self,
        request: &Request,
        source: &Source,
        schemes: Schemes,
        params: &[(String, String)],
    ) -> Result<Identity, Box<Response>> {
        let Some(digest) = &self.digest else {
            return Err(self.unauthorized(request, schemes, None, false));
        };
        let method = request.method().as_str();
        let remote = source.remote;
        // RFC 2617 §3.2.2.5: the credentials are for the Request-URI, or the
        // request is a bad one.
        let digest_uri = params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("uri"))
            .map(|(_, v)| v.as_str());
        if let Some(digest_uri) = digest_uri.filter(|_| self.digest_uri_must_match) {
            if !names_request_uri(digest_uri, request) {
                tracing::info!(%remote, %method, %digest_uri, request_uri = %request.uri(), "Digest uri does not match the Request-URI");
                return Err(with_to_tag(
                    Response::for_request(request, 400)
                        .reason("Digest URI Does Not Match Request-URI"),
                ));
            }
        }
        digest.verify(method, params).map_err(|error| {
            tracing::info!(%remote, %method, %error, "Digest credentials refused");
            match error {
                AuthError::Stale => self.unauthorized(request, schemes, None, true),
                AuthError::Malformed(_) => with_to_tag(
                    Response::for_request(request, 400).reason("Malformed Digest Credentials"),
                ),
                AuthError::Missing | AuthError::InvalidCredentials(_) => {
                    self.unauthorized(request, schemes, None, false)
                }
                other => with_to_tag(Response::for_request(request, other.sip_status())),
            }
        })
    }
}

/// Whether a Digest `uri` names the request's Request-URI.
fn names_request_uri(digest_uri: &str, request: &Request) -> bool {
    let request_uri = request.uri().as_str();
    digest_uri == request_uri
        || sip::Uri::parse(digest_uri).is_ok_and(|uri| uri.as_str() == request_uri)
}

/// The first SIP or SIPS identity of P-Asserted-Identity (RFC 3325 §9.1
/// allows one of each of sip/sips and tel); `Err` when unparseable.
fn asserted_identity(request: &Request) -> Result<Option<String>, ()> {
    let identities = request.headers().p_asserted_identity().map_err(|_| ())?;
    Ok(identities
        .iter()
        .find(|id| matches!(id.uri.scheme(), Scheme::Sip | Scheme::Sips) && id.uri.user().is_some())
        .map(|id| id.uri.aor()))
}

/// With authentication disabled: whoever From names.
pub(super) fn from_header_identity(request: &Request) -> Result<Identity, Box<Response>> {
    let aor = request
        .headers()
        .from()
        .map(|from| from.uri.aor())
        .map_err(|_| with_to_tag(Response::for_request(request, 400).reason("Bad From")))?;
    Ok(Identity {
        aor: aor.clone(),
        subject: aor,
        scopes: Vec::new(),
        client_id: None,
        expires_at: None,
        method: AuthMethod::None,
    })
}
