//! Tokens for the Helsenorge external API, system to system ("UseCase 1"): the
//! client-credentials grant at HelseID or at the Helsenorge STS v2, the client
//! authenticated by a signed assertion ([`super::assertion`]) made anew for
//! every request. Neither hands out refresh tokens, so a token is used until
//! shortly before `expires_in` runs out, then a new one is fetched the same way.
//!
//! HelseID's token endpoint is found once per run by OIDC discovery under the
//! authority, unless the config names it. DPoP is not used: Helsenorge's
//! external API neither asks for nor supports it yet.

use std::sync::Arc;
use std::time::Duration;

use super::assertion::{self, ClientKey, ASSERTION_TYPE};
use super::config::{AuthMode, HelsenorgeConfig};
use crate::http::url::HttpsUrl;
use crate::sidecar::clock::Clock;
use crate::sidecar::http::SidecarHttp;
use crate::sidecar::oauth::{self, Fetch, Token, TokenError, TokenSource};

/// A token is replaced this long before it expires, so that it does not run
/// out on its way to the service.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(30);
/// The service name in errors and logs.
const HELSEID: &str = "HelseID";
const STS: &str = "the Helsenorge STS";

/// Where the token endpoint is.
enum Endpoint {
    Fixed(HttpsUrl),
    Discover(HttpsUrl, tokio::sync::OnceCell<HttpsUrl>),
}

/// Client credentials with a client assertion.
pub struct AssertionSource {
    http: SidecarHttp,
    clock: Arc<dyn Clock>,
    key: ClientKey,
    client_id: String,
    scope: Option<String>,
    service: &'static str,
    endpoint: Endpoint,
}

impl AssertionSource {
    /// The source `cfg` describes, signing with `key`.
    pub fn new(cfg: &HelsenorgeConfig, key: ClientKey, http: SidecarHttp) -> AssertionSource {
        let (service, endpoint) = match (cfg.auth, &cfg.token_endpoint, &cfg.helseid_authority) {
            (AuthMode::Sts, _, _) => (STS, Endpoint::Fixed(cfg.sts_endpoint())),
            (AuthMode::Helseid, Some(t), _) => (HELSEID, Endpoint::Fixed(t.clone())),
            (AuthMode::Helseid, None, Some(a)) => (
                HELSEID,
                Endpoint::Discover(a.clone(), tokio::sync::OnceCell::new()),
            ),
            // resolve() made sure one of the two is set
            (AuthMode::Helseid, None, None) => (HELSEID, Endpoint::Fixed(cfg.sts_endpoint())),
        };
        AssertionSource {
            clock: http.clock.clone(),
            http,
            key,
            client_id: cfg.client_id.clone(),
            scope: cfg.scope.clone(),
            service,
            endpoint,
        }
    }

    async fn endpoint(&self) -> Result<HttpsUrl, TokenError> {
        match &self.endpoint {
            Endpoint::Fixed(u) => Ok(u.clone()),
            Endpoint::Discover(authority, found) => found
                .get_or_try_init(|| {
                    oauth::discover_token_endpoint(&self.http, self.service, authority)
                })
                .await
                .cloned(),
        }
    }

    async fn fetch_token(&self) -> Result<Token, TokenError> {
        let endpoint = self.endpoint().await?;
        let now = self.clock.now();
        // the audience is the endpoint as HelseID names it (no default port)
        let audience = audience(&endpoint);
        let client_assertion = assertion::build(&self.key, &self.client_id, &audience, now)
            .map_err(|why| TokenError::Failed {
                service: self.service,
                why,
            })?;
        let mut fields = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", client_assertion.as_str()),
        ];
        if let Some(s) = &self.scope {
            fields.push(("scope", s.as_str()));
        }
        let token =
            oauth::token_request(&self.http, self.service, &endpoint, &fields, None, now).await?;
        tracing::debug!(service = self.service, expires_at = %token.expires_at, "new access token");
        Ok(token)
    }
}

/// `url` as a string, without the port when it is 443.
pub fn audience(url: &HttpsUrl) -> String {
    if url.port == 443 {
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        format!("https://{host}{}", url.path)
    } else {
        url.to_string()
    }
}

impl TokenSource for AssertionSource {
    fn fetch<'a>(&'a self, _previous: Option<&'a Token>) -> Fetch<'a> {
        // no refresh tokens: every token is a first grant
        Box::pin(self.fetch_token())
    }
}

/// What a person has to do when the token endpoint says no.
pub fn explain(e: &TokenError) -> String {
    match e {
        TokenError::Refused {
            service,
            error,
            description,
        } => format!(
            "{service} refused kim-cm's client assertion ({error}{description}): check client_id, key_id and scope in [helsenorge], and that the public half of key_file is registered for the client under that key id"
        ),
        TokenError::Failed { .. } => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audience_leaves_out_the_default_port() {
        let u = HttpsUrl::parse("https://helseid-sts.nhn.no/connect/token").unwrap();
        assert_eq!(audience(&u), "https://helseid-sts.nhn.no/connect/token");
        let u = HttpsUrl::parse("https://localhost:8443/connect/token").unwrap();
        assert_eq!(audience(&u), "https://localhost:8443/connect/token");
    }
}
