//! The operator dashboard at `/`: one static page embedded in the binary.
//!
//! The page is plain HTML + JavaScript (no build step, no external assets)
//! that polls the public endpoints (/v1/models, /v1/startup, /metrics,
//! /v1/cache/stats, /v2/health/ready), so it shows nothing those endpoints do
//! not already expose and needs no server-side state of its own.

use axum::http::header;
use axum::response::IntoResponse;

/// The page source; edited as a normal HTML file next to this one.
pub const PAGE: &str = include_str!("dashboard.html");

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Revalidate so an upgraded server never runs a stale page's JS.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
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
    async fn the_router_serves_the_page_at_root() {
        use tower::ServiceExt;
        let mut config =
            crate::config::Config::from_toml(crate::config::EMBEDDED_DEFAULT).expect("default");
        config.server.models_dir = std::env::temp_dir().join("brisk-dashboard-no-models");
        let state = crate::build_state(
            config,
            brisk_engine::Timeline::new(std::time::Instant::now()),
        )
        .expect("state");
        let req = axum::http::Request::get("/")
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = crate::router(state).oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, PAGE.as_bytes());
    }
}
