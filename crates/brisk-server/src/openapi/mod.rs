//! The API's description: `GET /openapi.json` (OpenAPI 3.1, derived by
//! utoipa from the handlers' `#[utoipa::path]` annotations and request
//! types) and `GET /docs` (Swagger UI, embedded in the binary).
//!
//! A test keeps the document in step with the router: every route of
//! [`crate::routes::ROUTES`] is in the document and nothing else is.

pub mod schemas;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

/// Errors every operation may answer, in OpenAI's shape.
pub const ERRORS: &str = "OpenAI's error shape: `{\"error\": {message, type, param, code}}`";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "brisk",
        description = "A fast-starting multi-model inference server: OpenAI-compatible \
            chat, completions, embeddings, audio and model routes, Open Inference Protocol \
            health and inference, rerank (Cohere/Jina), topics, OCR, VAD, audio analysis, \
            pipelines and jobs, text translation (LibreTranslate). Every error is `{\"error\": {message, type, param, code}}`. \
            Cacheable answers carry `x-brisk-cache: hit|miss|bypass`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        api::chat::chat,
        api::chat::completion,
        api::embeddings::create,
        api::rerank::create,
        api::topics::create,
        api::audio::transcriptions,
        api::audio::translations,
        crate::stream::handler,
        api::speech::speech,
        api::vad::detect,
        api::analysis::analyze,
        api::ocr::recognize,
        api::translate::translate,
        api::translate::languages,
        api::translate::detect_language,
        api::pipelines::list,
        api::pipelines::run,
        crate::jobs::submit,
        crate::jobs::get,
        crate::jobs::cancel,
        api::models::list_models,
        api::models::get_model,
        api::models::load_model,
        api::models::unload_model,
        api::models::model_ready,
        api::models::model_metadata,
        api::embeddings::v2_infer,
        api::health::live,
        api::health::ready,
        api::health::startup,
        api::health::metrics,
        api::cache::stats,
        api::cache::clear,
        api::dashboard::page,
        api::dashboard::playground,
        openapi_json,
        docs_page,
        docs_asset,
    ),
    modifiers(&Security),
    tags(
        (name = "generation", description = "Chat and text completions (OpenAI), streaming as server-sent events"),
        (name = "embeddings", description = "Embeddings (OpenAI, Open Inference Protocol), rerank (Cohere/Jina), topics"),
        (name = "audio", description = "Transcription, translation, live transcription, speech, VAD, analysis"),
        (name = "vision", description = "OCR"),
        (name = "translation", description = "Text translation in LibreTranslate's API"),
        (name = "pipelines", description = "Multi-step pipelines and durable jobs"),
        (name = "models", description = "Models: list, load, unload, readiness"),
        (name = "operations", description = "Health, startup timeline, metrics, cache, dashboard, this document"),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer KEY` when the server has API keys (auth.rs); the
/// health probes, the dashboard and the docs stay open.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("api_key", []),
            // Also valid without a key: servers without API keys.
            utoipa::openapi::security::SecurityRequirement::default(),
        ]);
    }
}

/// The document, built once (it never changes while the server runs).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"openapi: {e}\"}}"))
    })
}

/// The OpenAPI 3.1 document of this server.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

const DOCS_HTML: &str = include_str!("docs.html");
const INIT_JS: &str = include_str!("init.js");
const SWAGGER_JS: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

/// The docs page (Swagger UI over `/openapi.json`); its script and style
/// are `/docs/{asset}`.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "Swagger UI", content_type = "text/html", body = String)))]
pub async fn docs_page() -> Response {
    static_asset("text/html; charset=utf-8", DOCS_HTML)
}

/// `/docs/{asset}`: the embedded Swagger UI files.
#[utoipa::path(get, path = "/docs/{asset}", tag = "operations",
    params(("asset" = String, Path, description = "`swagger-ui-bundle.js`, `swagger-ui.css` or `init.js`")),
    responses((status = 200, description = "The file", body = String),
              (status = "4XX", description = ERRORS, body = schemas::ErrorBody)))]
pub async fn docs_asset(
    axum::extract::Path(asset): axum::extract::Path<String>,
) -> Result<Response, crate::error::AppError> {
    match asset.as_str() {
        "swagger-ui-bundle.js" => Ok(static_asset("text/javascript", SWAGGER_JS)),
        "init.js" => Ok(static_asset("text/javascript", INIT_JS)),
        "swagger-ui.css" => Ok(static_asset("text/css", SWAGGER_CSS)),
        other => Err(crate::error::AppError::NotFound(format!(
            "no docs asset '{other}'"
        ))),
    }
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidate: an upgraded server must not run a stale page.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn doc() -> serde_json::Value {
        serde_json::from_str(document()).expect("the document is JSON")
    }

    /// Every route the router serves is described, and the document
    /// describes nothing the router lacks.
    #[test]
    fn document_and_router_list_the_same_operations() {
        let doc = doc();
        let mut described = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                    described.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = crate::routes::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        let missing: Vec<_> = routed.difference(&described).collect();
        let extra: Vec<_> = described.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes not in /openapi.json: {missing:?}"
        );
        assert!(extra.is_empty(), "described but not routed: {extra:?}");
    }

    #[test]
    fn document_is_openapi_3_1_and_every_operation_documents_errors() {
        let doc = doc();
        assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|k| k.starts_with('2') || k == "101"),
                    "{method} {path} documents no success answer"
                );
                if ![
                    "/v2/health/live",
                    "/",
                    "/playground",
                    "/docs",
                    "/openapi.json",
                    "/metrics",
                ]
                .contains(&path.as_str())
                {
                    assert!(
                        responses.contains_key("4XX"),
                        "{method} {path} documents no client errors"
                    );
                }
            }
        }
        // Multipart bodies, SSE and the WebSocket upgrade are described.
        let form = &doc["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"];
        assert!(form.get("multipart/form-data").is_some(), "{form}");
        let chat = &doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"];
        assert!(chat.get("text/event-stream").is_some(), "{chat}");
        let ws = &doc["paths"]["/v1/audio/transcriptions/stream"]["get"]["responses"];
        assert!(ws.get("101").is_some(), "{ws}");
    }

    #[tokio::test]
    async fn docs_page_and_assets_are_embedded() {
        let page = docs_page().await;
        assert_eq!(page.status(), 200);
        for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "init.js"] {
            assert!(DOCS_HTML.contains(&format!("/docs/{asset}")), "{asset}");
            let r = docs_asset(axum::extract::Path(asset.to_string()))
                .await
                .expect("asset");
            assert_eq!(r.status(), 200);
        }
        assert!(
            SWAGGER_JS.len() > 100_000,
            "the Swagger UI bundle is vendored"
        );
        assert!(INIT_JS.contains("/openapi.json"));
        assert!(docs_asset(axum::extract::Path("../Cargo.toml".into()))
            .await
            .is_err());
    }
}
