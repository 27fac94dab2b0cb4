//! Command-line and environment settings: [`ApiAuthArgs`] for servers of the
//! gRPC API, [`ServiceTokenArgs`] for processes calling it (edges).

use std::path::PathBuf;
use std::time::Duration;

use auth::{BearerConfig, BearerValidator, KeySource, ScopePolicy};
use clap::Args;

use crate::access::{AccessPolicy, SCOPE_INTERNAL};
use crate::client::{ClientCredentials, CredentialsError, ServiceCredentials, TokenSource};
use crate::server::ApiAuth;

/// Domain given to a token subject that has none. gRPC callers are often
/// services whose subject is a client id, not a SIP user; the reserved
/// `.invalid` name (RFC 2606) can never collide with a real domain.
pub const SERVICE_DOMAIN: &str = "invalid";

/// Adapts a bearer configuration (for instance the SIP listener's) to the
/// gRPC API: scopes are checked per RPC rather than per SIP method, and a
/// subject without a domain is accepted.
pub fn api_bearer_config(mut config: BearerConfig) -> BearerConfig {
    config.scopes = ScopePolicy::disabled();
    if config.default_domain.is_none() {
        config.default_domain = Some(SERVICE_DOMAIN.to_owned());
    }
    config
}

/// Where bearer tokens come from and which ones are accepted: the one
/// definition of the `--auth-*` token-provider flags, flattened into the
/// gRPC servers' [`ApiAuthArgs`] and into the SIP edge's authentication
/// flags, so both read the same names, environment variables and defaults.
#[derive(Args, Debug, Clone, Default)]
pub struct BearerArgs {
    /// Realm named in challenges (`WWW-Authenticate`).
    #[arg(long, env = "AUTH_REALM", default_value = "presence")]
    pub auth_realm: String,
    /// JWKS document on disk (re-read periodically, so replacing it rotates keys).
    #[arg(long, env = "AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<PathBuf>,
    /// JWKS document URL.
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,
    /// OpenID Connect issuer or discovery document URL (its jwks_uri is used).
    #[arg(long, env = "AUTH_DISCOVERY_URL")]
    pub auth_discovery_url: Option<String>,
    /// Accepted token issuers (`iss`), comma-separated.
    #[arg(long, env = "AUTH_ISSUER", value_delimiter = ',')]
    pub auth_issuer: Vec<String>,
    /// Accepted token audiences (`aud`), comma-separated.
    #[arg(long, env = "AUTH_AUDIENCE", value_delimiter = ',')]
    pub auth_audience: Vec<String>,
    /// Claim naming the caller (`sub`, `preferred_username`, `sip_uri`,
    /// `email`, ...).
    #[arg(long, env = "AUTH_IDENTITY_CLAIM", default_value = "sub")]
    pub auth_identity_claim: String,
    /// RFC 7662 introspection endpoint for opaque tokens.
    #[arg(long, env = "AUTH_INTROSPECTION_URL")]
    pub auth_introspection_url: Option<String>,
    /// Client id of this service at the introspection endpoint.
    #[arg(long, env = "AUTH_INTROSPECTION_CLIENT_ID", default_value = "")]
    pub auth_introspection_client_id: String,
    /// Client secret of this service at the introspection endpoint.
    #[arg(
        long,
        env = "AUTH_INTROSPECTION_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub auth_introspection_client_secret: String,
}

impl BearerArgs {
    /// Whether a token provider (keys or introspection) is configured.
    pub fn has_provider(&self) -> bool {
        self.key_source().is_some() || self.auth_introspection_url.is_some()
    }

    /// The signing keys' source: a file, else a URL, else discovery.
    pub fn key_source(&self) -> Option<KeySource> {
        if let Some(path) = &self.auth_jwks_file {
            Some(KeySource::File(path.clone()))
        } else if let Some(url) = &self.auth_jwks_url {
            Some(KeySource::Url(url.clone()))
        } else {
            self.auth_discovery_url.clone().map(KeySource::Discovery)
        }
    }

    /// The introspection client, authenticating with `auth_method`.
    pub fn introspection(
        &self,
        auth_method: auth::ClientAuthMethod,
    ) -> Option<auth::IntrospectionConfig> {
        self.auth_introspection_url
            .as_ref()
            .map(|url| auth::IntrospectionConfig {
                url: url.clone(),
                client_id: self.auth_introspection_client_id.clone(),
                client_secret: self.auth_introspection_client_secret.clone(),
                auth_method,
            })
    }

    /// The bearer configuration these flags describe, every other setting at
    /// its default.
    pub fn bearer_config(&self) -> BearerConfig {
        BearerConfig {
            realm: self.auth_realm.clone(),
            issuers: self.auth_issuer.clone(),
            audiences: self.auth_audience.clone(),
            jwks: self.key_source(),
            introspection: self.introspection(auth::ClientAuthMethod::Basic),
            identity_claim: self.auth_identity_claim.clone(),
            ..BearerConfig::default()
        }
    }
}

/// How a gRPC server authenticates its callers. Without a key source or an
/// introspection endpoint the API is open to anyone who can reach it.
#[derive(Args, Debug, Clone, Default)]
pub struct ApiAuthArgs {
    /// The token provider.
    #[command(flatten)]
    pub bearer: BearerArgs,
}

impl ApiAuthArgs {
    /// The bearer configuration, or `None` when no provider is configured.
    pub fn bearer_config(&self) -> Option<BearerConfig> {
        self.bearer
            .has_provider()
            .then(|| api_bearer_config(self.bearer.bearer_config()))
    }

    /// The authentication of a server with `policy`. Without a provider the
    /// API is open, and `service` says so loudly in the log.
    pub async fn api_auth(
        &self,
        service: &str,
        policy: AccessPolicy,
    ) -> Result<ApiAuth, auth::AuthError> {
        match self.bearer_config() {
            Some(config) => {
                let validator = BearerValidator::new_waiting_for_provider(config).await?;
                tracing::info!(
                    service,
                    "gRPC callers must present bearer tokens with presence:* scopes"
                );
                Ok(ApiAuth::new(validator, policy))
            }
            None => {
                warn_unauthenticated(service);
                Ok(ApiAuth::disabled())
            }
        }
    }
}

/// Logs that a gRPC API accepts every caller.
pub fn warn_unauthenticated(service: &str) {
    tracing::warn!(
        service,
        "THE gRPC API IS UNAUTHENTICATED: anyone who can reach it can read and change presence. Configure --auth-jwks-file, --auth-jwks-url, --auth-discovery-url or --auth-introspection-url to require bearer tokens."
    );
}

/// The token an edge presents to the services. At most one of a token, a
/// token file or a token endpoint.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceTokenArgs {
    /// Bearer token presented to the presence and registrar services.
    #[arg(long, env = "SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,
    /// File holding that token, re-read when it changes.
    #[arg(long, env = "SERVICE_TOKEN_FILE")]
    pub service_token_file: Option<PathBuf>,
    /// OAuth 2.0 token endpoint: tokens are obtained with the client
    /// credentials grant and renewed before they expire.
    #[arg(long, env = "SERVICE_TOKEN_URL")]
    pub service_token_url: Option<String>,
    /// Client id for the client credentials grant.
    #[arg(long, env = "SERVICE_CLIENT_ID", default_value = "")]
    pub service_client_id: String,
    /// Client secret for the client credentials grant.
    #[arg(
        long,
        env = "SERVICE_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub service_client_secret: String,
    /// Scopes asked for with the client credentials grant.
    #[arg(long, env = "SERVICE_SCOPE", default_value = SCOPE_INTERNAL)]
    pub service_scope: String,
    /// `audience` parameter of the client credentials grant, for servers
    /// that need one.
    #[arg(long, env = "SERVICE_AUDIENCE")]
    pub service_audience: Option<String>,
}

impl ServiceTokenArgs {
    /// The configured source, if any.
    pub fn source(&self) -> Result<Option<TokenSource>, CredentialsError> {
        let given = [
            self.service_token.is_some(),
            self.service_token_file.is_some(),
            self.service_token_url.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(CredentialsError::Config(
                "give only one of --service-token, --service-token-file and --service-token-url"
                    .to_owned(),
            ));
        }
        if let Some(token) = &self.service_token {
            return Ok(Some(TokenSource::Static(token.clone())));
        }
        if let Some(path) = &self.service_token_file {
            return Ok(Some(TokenSource::File(path.clone())));
        }
        let Some(token_url) = &self.service_token_url else {
            return Ok(None);
        };
        if self.service_client_id.is_empty() {
            return Err(CredentialsError::Config(
                "--service-token-url needs --service-client-id (and usually --service-client-secret)"
                    .to_owned(),
            ));
        }
        Ok(Some(TokenSource::ClientCredentials(ClientCredentials {
            token_url: token_url.clone(),
            client_id: self.service_client_id.clone(),
            client_secret: self.service_client_secret.clone(),
            scope: self.service_scope.clone(),
            audience: self.service_audience.clone(),
        })))
    }

    /// The credentials, started; [`ServiceCredentials::none`] when nothing
    /// is configured.
    ///
    /// While the token endpoint cannot be reached it waits and asks again
    /// (backoff from 250 ms to 10 s, logging why) instead of failing: at a
    /// rolling start the identity provider may come up after the edge. A
    /// refusal of the client's credentials fails at once.
    pub async fn credentials(&self) -> Result<ServiceCredentials, CredentialsError> {
        let Some(source) = self.source()? else {
            return Ok(ServiceCredentials::none());
        };
        let mut wait = Duration::from_millis(250);
        loop {
            match ServiceCredentials::start(source.clone()).await {
                Err(CredentialsError::Endpoint(reason)) => {
                    tracing::warn!(
                        %reason,
                        retry_in_ms = wait.as_millis() as u64,
                        "waiting for the token endpoint"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                other => return other,
            }
        }
    }
}

/// A token source minting tokens with `mint` every `renew_every`.
pub fn minted(
    mint: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    renew_every: Duration,
) -> TokenSource {
    TokenSource::Minted {
        mint: std::sync::Arc::new(mint),
        renew_every,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Server {
        #[command(flatten)]
        auth: ApiAuthArgs,
    }

    fn parse(args: &[&str]) -> ApiAuthArgs {
        Server::try_parse_from(std::iter::once("server").chain(args.iter().copied()))
            .unwrap()
            .auth
    }

    #[test]
    fn the_provider_flags_make_the_bearer_configuration() {
        assert!(parse(&[]).bearer_config().is_none());
        let config = parse(&[
            "--auth-jwks-url",
            "https://idp.test/jwks",
            "--auth-discovery-url",
            "https://idp.test",
            "--auth-issuer",
            "https://idp.test,https://other.test",
            "--auth-audience",
            "presence",
            "--auth-realm",
            "cluster",
            "--auth-identity-claim",
            "client_id",
            "--auth-introspection-url",
            "https://idp.test/introspect",
            "--auth-introspection-client-id",
            "edge",
        ])
        .bearer_config()
        .unwrap();
        // A JWKS URL wins over discovery; the API checks scopes per RPC.
        assert_eq!(
            config.jwks,
            Some(KeySource::Url("https://idp.test/jwks".into()))
        );
        assert_eq!(config.issuers, ["https://idp.test", "https://other.test"]);
        assert_eq!(config.audiences, ["presence"]);
        assert_eq!(config.realm, "cluster");
        assert_eq!(config.identity_claim, "client_id");
        assert_eq!(config.default_domain.as_deref(), Some(SERVICE_DOMAIN));
        assert_eq!(config.scopes, ScopePolicy::disabled());
        let introspection = config.introspection.unwrap();
        assert_eq!(introspection.url, "https://idp.test/introspect");
        assert_eq!(introspection.client_id, "edge");

        let introspection_only = parse(&["--auth-introspection-url", "https://idp.test/i"]);
        assert!(introspection_only.bearer.has_provider());
        assert_eq!(introspection_only.bearer_config().unwrap().jwks, None);
    }
}
