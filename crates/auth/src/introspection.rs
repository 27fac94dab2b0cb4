//! RFC 7662 token introspection for opaque access tokens.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::config::{ClientAuthMethod, IntrospectionConfig};
use crate::error::AuthError;
use crate::jwks::read_limited;

/// Largest introspection response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A client of one introspection endpoint.
pub(crate) struct Introspector {
    config: IntrospectionConfig,
    client: reqwest::Client,
    /// Precomputed `Authorization: Basic ...` for `client_secret_basic`.
    basic_authorization: Option<String>,
}

impl Introspector {
    pub(crate) fn new(config: IntrospectionConfig, client: reqwest::Client) -> Self {
        let basic_authorization = match config.auth_method {
            ClientAuthMethod::Basic => {
                // RFC 6749 §2.3.1: id and secret are form-urlencoded before being joined and base64-encoded.
                let id: String =
                    form_urlencoded::byte_serialize(config.client_id.as_bytes()).collect();
                let secret: String =
                    form_urlencoded::byte_serialize(config.client_secret.as_bytes()).collect();
                Some(format!(
                    "Basic {}",
                    STANDARD.encode(format!("{id}:{secret}"))
                ))
            }
            ClientAuthMethod::Post => None,
        };
        Introspector {
            config,
            client,
            basic_authorization,
        }
    }

    /// Asks the authorization server about `token`. Returns the response members of an active token;
    /// an inactive token is [`AuthError::InvalidToken`], an unreachable or failing server
    /// [`AuthError::ProviderUnavailable`].
    pub(crate) async fn introspect(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        // Built in its own scope: the serializer is not Send and must not live across an await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token);
            form.append_pair("token_type_hint", "access_token");
            if self.config.auth_method == ClientAuthMethod::Post {
                form.append_pair("client_id", &self.config.client_id);
                form.append_pair("client_secret", &self.config.client_secret);
            }
            form.finish()
        };
        let mut request = self
            .client
            .post(&self.config.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        if let Some(authorization) = &self.basic_authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let unavailable = |e: String| AuthError::ProviderUnavailable(format!("introspection: {e}"));
        let mut response = request
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            tracing::error!(%status, "the introspection endpoint refused this service's client credentials");
            return Err(unavailable(format!(
                "client credentials refused ({status})"
            )));
        }
        if !status.is_success() {
            return Err(unavailable(format!("HTTP status {status}")));
        }
        let body = read_limited(&mut response, MAX_RESPONSE_BYTES)
            .await
            .map_err(unavailable)?;
        let members: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("response is not a JSON object: {e}")))?;
        if members.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::InvalidToken(
                "the token is not active".to_owned(),
            ));
        }
        Ok(members)
    }
}
