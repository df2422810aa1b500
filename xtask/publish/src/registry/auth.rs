//! Logging in, as distribution's token auth has it: `GET /v2/` without credentials;
//! a `Basic` challenge takes the credentials as they are, a `Bearer` one sends them
//! to the realm it names for a token scoped to this repository (pull, or pull and
//! push). The token response is bounded like every other body.

use super::credentials::Credentials;
use super::{is_loopback, shown, Access, Failure, Session, TOKEN_LIMIT};
use base64::Engine;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Url};

/// What a registry asked for in its `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Session {
    /// One try at logging in for `access`: sets the `Authorization` every later
    /// request to the registry carries, if the registry wants one.
    pub(super) async fn login_once(&self, access: Access) -> Result<(), Failure> {
        let url = format!("{}v2/", self.base);
        let request = self.http.request(Method::GET, &url);
        let answer = self.answer(request, &Method::GET, &url, None).await?;
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let header = answer
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok());
        let (401, Some(header)) = (answer.status, header) else {
            return Err(answer.failure(&url));
        };
        let authorization = match challenge(header).map_err(|detail| Failure::Protocol {
            url: shown(&url),
            detail,
        })? {
            Challenge::Basic => basic(&self.credentials),
            Challenge::Bearer { realm, service } => {
                let token = self.token(&realm, service.as_deref(), access).await?;
                if let Ok(mut secrets) = self.secrets.lock() {
                    secrets.push(token.clone());
                }
                Some(format!("Bearer {token}"))
            }
        };
        if let Ok(mut current) = self.authorization.lock() {
            *current = authorization;
        }
        Ok(())
    }

    /// A token from `realm` for this repository, with our credentials if we have any.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        access: Access,
    ) -> Result<String, Failure> {
        let protocol = |detail: String| Failure::Protocol {
            url: shown(realm),
            detail,
        };
        let mut url = Url::parse(realm)
            .map_err(|err| protocol(format!("a token realm that is no URL ({err})")))?;
        let plain = url.scheme() == "http";
        let realm_host = url.host_str().unwrap_or_default().to_string();
        if plain
            && !self.insecure
            && !is_loopback(&realm_host)
            && basic(&self.credentials).is_some()
        {
            return Err(protocol(format!(
                "the registry sends us for a token over plain HTTP to {realm_host}; refusing to send credentials there (pass --insecure if that is meant)"
            )));
        }
        let actions = match access {
            Access::Read => "pull",
            Access::Write => "pull,push",
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:{actions}", self.repository()),
            );
        }
        let mut request = self.http.request(Method::GET, url.as_str());
        if let Some(basic) = basic(&self.credentials) {
            request = request.header(AUTHORIZATION, basic);
        }
        let answer = self
            .answer(request, &Method::GET, url.as_str(), Some(TOKEN_LIMIT))
            .await?
            .success(url.as_str())?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let response: TokenResponse = serde_json::from_slice(&answer.body)
            .map_err(|_| protocol("a token response that is not JSON".to_string()))?;
        response
            .token
            .or(response.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| protocol("a token response without a token".to_string()))
    }
}

/// `Basic base64(user:password)`, when we have credentials.
fn basic(credentials: &Credentials) -> Option<String> {
    match credentials {
        Credentials::Anonymous => None,
        Credentials::Basic { user, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )),
    }
}

/// The challenge we can answer, from a `WWW-Authenticate` value (Bearer before Basic).
fn challenge(header: &str) -> Result<Challenge, String> {
    let challenges = http_auth::parse_challenges(header)
        .map_err(|err| format!("a WWW-Authenticate we cannot parse ({err})"))?;
    let param = |c: &http_auth::ChallengeRef, name: &str| {
        c.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_unescaped())
    };
    if let Some(bearer) = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    {
        let realm = param(bearer, "realm").ok_or("a Bearer challenge without a realm")?;
        return Ok(Challenge::Bearer {
            realm,
            service: param(bearer, "service"),
        });
    }
    if challenges
        .iter()
        .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
    {
        return Ok(Challenge::Basic);
    }
    Err(format!("a challenge we cannot answer ({header})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            challenge(
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/pause:pull""#
            ),
            Ok(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into())
            })
        );
        assert_eq!(
            challenge(r#"Basic realm="Registry Realm""#),
            Ok(Challenge::Basic)
        );
        assert!(challenge("Negotiate").is_err());
        assert!(challenge(r#"Bearer service="x""#).is_err());
    }

    #[test]
    fn basic_is_base64_of_user_and_password() {
        let credentials = Credentials::Basic {
            user: "alice".into(),
            password: "s3cr:et".into(),
        };
        assert_eq!(
            basic(&credentials).as_deref(),
            Some("Basic YWxpY2U6czNjcjpldA==")
        );
        assert_eq!(basic(&Credentials::Anonymous), None);
    }
}
