//! API keys (`Authorization: Bearer KEY`) and admin keys.
//!
//! - No keys configured: every endpoint is open (the default bind address is
//!   127.0.0.1, so only local clients reach it).
//! - `api_keys` set: every endpoint but health probes (and `/metrics` and the
//!   dashboard pages, `/` and `/playground`, and `/metrics` when public)
//!   needs one of them, or an admin key. The pages hold no data: what they
//!   show comes from calls that need the key (the playground asks for it).
//! - `admin_keys` set: model load/unload and cache clearing need one of them.
//!   When API keys are set but no admin key is, admin endpoints are refused:
//!   an ordinary client key never grants admin rights.
//!
//! Keys are compared as blake3 digests with a constant-time equality over
//! every configured key, so neither the position of the first differing
//! byte nor which key matched shows in the response time.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::AuthConfig;
use crate::error::AppError;
use crate::AppState;

/// The configured keys, hashed once at startup.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    api: Vec<[u8; 32]>,
    admin: Vec<[u8; 32]>,
    public_metrics: bool,
}

fn digest(key: &str) -> [u8; 32] {
    *blake3::hash(key.as_bytes()).as_bytes()
}

fn env_keys(var: &str) -> Vec<String> {
    std::env::var(var)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Constant-time: looks at every byte of every key whatever matches.
fn any_matches(candidates: &[[u8; 32]], presented: &[u8; 32]) -> bool {
    let mut found = 0u8;
    for c in candidates {
        let diff = c
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found |= u8::from(diff == 0);
    }
    found == 1
}

impl Keys {
    /// Config keys plus those from the environment. Empty keys and keys
    /// shorter than 8 characters are refused: they are guessable.
    pub fn from_config(c: &AuthConfig) -> Result<Self, String> {
        let api: Vec<String> = c
            .api_keys
            .iter()
            .cloned()
            .chain(env_keys(crate::env::API_KEYS))
            .collect();
        let admin: Vec<String> = c
            .admin_keys
            .iter()
            .cloned()
            .chain(env_keys(crate::env::ADMIN_KEYS))
            .collect();
        if let Some(k) = api.iter().chain(&admin).find(|k| k.trim().len() < 8) {
            return Err(format!(
                "auth keys must be at least 8 characters (one is {} long)",
                k.trim().len()
            ));
        }
        Ok(Self {
            api: api.iter().map(|k| digest(k)).collect(),
            admin: admin.iter().map(|k| digest(k)).collect(),
            public_metrics: c.public_metrics,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.api.is_empty() || !self.admin.is_empty()
    }
}

/// Endpoints that change what the server runs or holds.
fn is_admin(method: &Method, path: &str) -> bool {
    (method == Method::POST
        && path.starts_with("/v1/models/")
        && (path.ends_with("/load") || path.ends_with("/unload")))
        || (method == Method::DELETE && path == "/v1/cache")
}

/// Probes must work for orchestrators that cannot hold secrets; the static
/// pages must load so they can ask for a key.
fn is_public(path: &str, keys: &Keys) -> bool {
    path == "/v2/health/live"
        || path == "/v2/health/ready"
        || (path.starts_with("/v2/models/") && path.ends_with("/ready"))
        || path == "/"
        // The API's description and its docs page: they hold no data.
        || path == "/openapi.json"
        || path == "/docs"
        || path.starts_with("/docs/")
        || path == "/playground"
        || (keys.public_metrics && path == "/metrics")
}

fn bearer(req: &Request) -> Option<[u8; 32]> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| digest(key.trim()))
}

/// The middleware: 401 without a valid key, 403 for a client key on an
/// admin endpoint.
pub async fn check(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let keys = &s.keys;
    if !keys.enabled() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let admin = is_admin(req.method(), path);
    if !admin && is_public(path, keys) {
        return next.run(req).await;
    }
    let Some(presented) = bearer(&req) else {
        return AppError::Unauthorized("missing API key: send 'Authorization: Bearer KEY'".into())
            .into_response();
    };
    let is_admin_key = any_matches(&keys.admin, &presented);
    if admin {
        if is_admin_key {
            return next.run(req).await;
        }
        if any_matches(&keys.api, &presented) {
            return AppError::Forbidden("this endpoint needs an admin key".into()).into_response();
        }
        return AppError::Unauthorized("invalid API key".into()).into_response();
    }
    // With only admin keys configured, ordinary endpoints stay open.
    if keys.api.is_empty() || is_admin_key || any_matches(&keys.api, &presented) {
        return next.run(req).await;
    }
    AppError::Unauthorized("invalid API key".into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_is_exact() {
        let keys = [digest("sk-first-key"), digest("sk-second-key")];
        assert!(any_matches(&keys, &digest("sk-second-key")));
        assert!(!any_matches(&keys, &digest("sk-second-ke")));
        assert!(!any_matches(&keys, &digest("sk-second-keyy")));
        assert!(!any_matches(&[], &digest("anything")));
    }

    #[test]
    fn short_keys_are_refused() {
        let c = AuthConfig {
            api_keys: vec!["short".into()],
            ..Default::default()
        };
        assert!(Keys::from_config(&c).is_err());
    }

    #[test]
    fn public_paths() {
        let keys = Keys::default();
        for path in ["/", "/playground", "/v2/health/live", "/v2/health/ready"] {
            assert!(is_public(path, &keys), "{path} should be public");
        }
        assert!(is_public("/v2/models/m/ready", &keys));
        for path in [
            "/playground/",
            "/playground/x",
            "/v1/models",
            "/v1/chat/completions",
            "/v1/embeddings",
            "/metrics",
        ] {
            assert!(!is_public(path, &keys), "{path} should need a key");
        }
        let open_metrics = Keys {
            public_metrics: true,
            ..Keys::default()
        };
        assert!(is_public("/metrics", &open_metrics));
    }

    #[test]
    fn admin_endpoints() {
        assert!(is_admin(&Method::POST, "/v1/models/m/load"));
        assert!(is_admin(&Method::POST, "/v1/models/m/unload"));
        assert!(is_admin(&Method::DELETE, "/v1/cache"));
        assert!(!is_admin(&Method::GET, "/v1/cache/stats"));
        assert!(!is_admin(&Method::GET, "/v1/models/m"));
    }
}
