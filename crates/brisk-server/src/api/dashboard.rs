//! The operator dashboard at `/`: one static page embedded in the binary.
//!
//! The page is plain HTML + JavaScript (no build step, no external assets)
//! that polls the public endpoints (/v1/models, /v1/startup, /metrics,
//! /v1/cache/stats, /v2/health/ready), so it shows nothing those endpoints do
//! not already expose and needs no server-side state of its own.
//!
//! Its sibling, the playground at `/playground`, is another static page that
//! calls the inference endpoints from the browser (streamed chat,
//! transcription of an upload or a microphone recording, speech, embeddings
//! and their cosine, OCR), showing each call's latency and `x-brisk-cache`.

use axum::http::header;
use axum::response::IntoResponse;

/// The page source; edited as a normal HTML file next to this one.
pub const PAGE: &str = include_str!("dashboard.html");

/// The playground page source (`playground.html`, next to this file).
pub const PLAYGROUND: &str = include_str!("playground.html");

fn html(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Revalidate so an upgraded server never runs a stale page's JS.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    html(PAGE)
}

/// `GET /playground`.
#[utoipa::path(get, path = "/playground", tag = "operations",
    responses((status = 200, description = "The playground: chat, transcription, speech, embeddings and OCR from the browser", content_type = "text/html", body = String)))]
pub async fn playground() -> impl IntoResponse {
    html(PLAYGROUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_embedded_page_as_html() {
        let resp = page().await.into_response();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        // The page reads these endpoints; renaming one must break this test.
        for path in [
            "/v1/models",
            "/v1/startup",
            "/metrics",
            "/v1/cache/stats",
            "/v2/health/ready",
        ] {
            assert!(
                PAGE.contains(&format!("\"{path}\"")),
                "page no longer polls {path}"
            );
        }
    }

    #[tokio::test]
    async fn serves_the_playground_and_it_calls_the_api() {
        let resp = playground().await.into_response();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        // Every endpoint the playground calls; renaming one must break this.
        for path in [
            "/v1/models",
            "/v1/chat/completions",
            "/v1/audio/transcriptions",
            "/v1/audio/speech",
            "/v1/embeddings",
            "/v1/ocr",
        ] {
            assert!(
                PLAYGROUND.contains(&format!("\"{path}\"")),
                "playground no longer calls {path}"
            );
        }
        // What the page relies on from the responses and the auth layer.
        for needle in [
            "\"x-brisk-cache\"",
            "\"Authorization\"",
            "\"Bearer \"",
            "sessionStorage",
            "response.status === 401",
            "response_format: \"wav\"",
            "stream: true",
            "MediaRecorder",
        ] {
            assert!(PLAYGROUND.contains(needle), "playground lost {needle}");
        }
        // Both pages link to each other.
        assert!(PAGE.contains("href=\"/playground\""));
        assert!(PLAYGROUND.contains("href=\"/\""));
        // Self-contained: nothing fetched from elsewhere.
        assert!(!PLAYGROUND.contains("http://") && !PLAYGROUND.contains("https://"));
        assert!(!PLAYGROUND.contains("<script src") && !PLAYGROUND.contains("<link"));
    }

    async fn get(path: &str, api_keys: &[&str], key: Option<&str>) -> (u16, axum::body::Bytes) {
        use tower::ServiceExt;
        let mut config =
            crate::config::Config::from_toml(crate::config::EMBEDDED_DEFAULT).expect("default");
        config.server.models_dir = std::env::temp_dir().join("brisk-dashboard-no-models");
        config.auth.api_keys = api_keys.iter().map(|k| k.to_string()).collect();
        let state = crate::build_state(
            config,
            brisk_engine::Timeline::new(std::time::Instant::now()),
        )
        .expect("state");
        let mut req = axum::http::Request::get(path);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = req.body(axum::body::Body::empty()).expect("request");
        let resp = crate::router(state).oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    }

    #[tokio::test]
    async fn the_router_serves_the_page_at_root() {
        let (status, body) = get("/", &[], None).await;
        assert_eq!(status, 200);
        assert_eq!(body, PAGE.as_bytes());
    }

    #[tokio::test]
    async fn the_playground_loads_without_a_key_but_its_calls_need_one() {
        let keys = ["sk-playground-test"];
        let (status, body) = get("/playground", &keys, None).await;
        assert_eq!(status, 200);
        assert_eq!(body, PLAYGROUND.as_bytes());
        assert_eq!(get("/v1/models", &keys, None).await.0, 401);
        assert_eq!(
            get("/v1/models", &keys, Some("sk-playground-test")).await.0,
            200
        );
    }
}
