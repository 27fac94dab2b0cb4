//! The server side: a tower layer in front of a tonic server that validates
//! the caller's bearer token (`authorization: Bearer …` metadata) and checks
//! the scope the RPC requires before the RPC runs.
//!
//! Refusals follow gRPC conventions: no or an invalid token is
//! `UNAUTHENTICATED`, a valid token without the scope is `PERMISSION_DENIED`,
//! an unreachable token provider is `UNAVAILABLE`. Each carries a
//! `www-authenticate` metadata entry with the RFC 6750 challenge, so HTTP-
//! minded clients learn the realm and the scope they need.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use auth::{AuthError, BearerValidator, Identity};
use tonic::Status;

use crate::access::{Access, AccessPolicy};

/// The authenticated caller of an RPC, placed in the request's extensions
/// (`request.extensions().get::<Caller>()`). Absent when the server runs
/// without authentication or the RPC is open.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who the token names, and its scopes.
    pub identity: Identity,
}

impl Caller {
    /// A name for the caller in stored records and logs: the token's
    /// client id when it has one (a service), else its subject.
    pub fn name(&self) -> &str {
        self.identity
            .client_id
            .as_deref()
            .unwrap_or(&self.identity.subject)
    }
}

/// How a server authenticates gRPC callers. Cheap to clone.
#[derive(Clone)]
pub struct ApiAuth {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    validator: BearerValidator,
    policy: AccessPolicy,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl ApiAuth {
    /// Every RPC is served to anyone. The caller should log loudly that it
    /// runs this way.
    pub fn disabled() -> Self {
        ApiAuth { inner: None }
    }

    /// Tokens are checked with `validator`; `policy` says which scope each
    /// RPC requires.
    pub fn new(validator: BearerValidator, policy: AccessPolicy) -> Self {
        ApiAuth {
            inner: Some(Arc::new(Inner { validator, policy })),
        }
    }

    /// Whether tokens are checked.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The layer to put in front of a tonic server
    /// (`Server::builder().layer(auth.layer())`).
    pub fn layer(&self) -> ApiAuthLayer {
        ApiAuthLayer { auth: self.clone() }
    }

    /// Decides one call: the caller when authenticated, `None` when no
    /// check applies, or the status refusing the call.
    pub async fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Option<Caller>, Box<Status>> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let required = inner.policy.required(path);
        if required == Access::Open {
            return Ok(None);
        }
        let refuse = |error: AuthError| {
            tracing::info!(rpc = %path, error = %error, "gRPC call refused");
            Box::new(refusal(&inner.validator, required, &error))
        };
        let token = bearer_token(headers).map_err(refuse)?;
        let identity = inner.validator.validate(token).await.map_err(refuse)?;
        if !required.allows(&identity.scopes) {
            return Err(refuse(AuthError::InsufficientScope {
                required: required.scope().unwrap_or_default().to_owned(),
            }));
        }
        Ok(Some(Caller { identity }))
    }
}

/// The token of an `authorization: Bearer <token>` entry.
fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "more than one authorization entry".to_owned(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization is not ASCII text".to_owned()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(
            "authorization scheme is not Bearer".to_owned(),
        ));
    }
    Ok(token.trim())
}

/// The gRPC status for a refused call, with the bearer challenge attached.
fn refusal(validator: &BearerValidator, required: Access, error: &AuthError) -> Status {
    let description = error.public_description();
    let mut status = match error {
        AuthError::InsufficientScope { required } => {
            Status::permission_denied(format!("the token lacks the {required} scope"))
        }
        AuthError::ProviderUnavailable(_) => Status::unavailable(description),
        AuthError::Config(_) => Status::internal(description),
        AuthError::Missing => Status::unauthenticated(format!(
            "a bearer token is required (authorization: Bearer …) with the {} scope",
            required.scope().unwrap_or_default()
        )),
        _ => Status::unauthenticated(description),
    };
    let mut challenge = validator.challenge(Some(error));
    if challenge.scope.is_none() {
        challenge.scope = required.scope().map(str::to_owned);
    }
    if let Ok(value) = challenge.header_value().parse() {
        status.metadata_mut().insert("www-authenticate", value);
    }
    status
}

/// Tower layer produced by [`ApiAuth::layer`].
#[derive(Clone, Debug)]
pub struct ApiAuthLayer {
    auth: ApiAuth,
}

impl<S> tower_layer::Layer<S> for ApiAuthLayer {
    type Service = ApiAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiAuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`ApiAuthLayer`] wraps around a server's routes.
#[derive(Clone, Debug)]
pub struct ApiAuthService<S> {
    inner: S,
    auth: ApiAuth,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for ApiAuthService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one that must be called;
        // a fresh clone takes its place for the next call.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.check(request.uri().path(), request.headers()).await {
                Ok(caller) => {
                    if let Some(caller) = caller {
                        request.extensions_mut().insert(caller);
                    }
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        if let Ok(value) = value.parse() {
            map.insert(http::header::AUTHORIZATION, value);
        }
        map
    }

    #[test]
    fn bearer_token_is_read_from_the_authorization_entry() {
        assert_eq!(
            bearer_token(&headers("Bearer abc.def")).ok(),
            Some("abc.def")
        );
        assert_eq!(bearer_token(&headers("bearer  xyz ")).ok(), Some("xyz"));
        assert_eq!(
            bearer_token(&http::HeaderMap::new()).err(),
            Some(AuthError::Missing)
        );
        assert!(matches!(
            bearer_token(&headers("Basic dXNlcjpwYXNz")),
            Err(AuthError::Malformed(_))
        ));
        let mut twice = headers("Bearer a");
        if let Ok(value) = "Bearer b".parse() {
            twice.append(http::header::AUTHORIZATION, value);
        }
        assert!(matches!(bearer_token(&twice), Err(AuthError::Malformed(_))));
    }
}
