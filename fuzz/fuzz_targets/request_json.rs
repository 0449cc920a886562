//! Request bodies through the real router (simulated models): any bytes to
//! any JSON endpoint must get a 2xx or 4xx, never a 5xx or a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use brisk_server::config::Config;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const CONFIG: &str = r#"
[server]
discover = false
[models.emb]
backend = "sim"
source = "emb"
[models.gen]
backend = "sim"
source = "gen"
options = { task = "generation", max_tokens = 16 }
"#;

const PATHS: &[&str] = &[
    "/v1/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v2/models/emb/infer",
];

fn setup() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static S: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let config = Config::from_toml(CONFIG).expect("config");
        let state = rt.block_on(async {
            let s = brisk_server::build_state(config, brisk_engine::Timeline::new(Instant::now()))
                .expect("state");
            s.registry.start();
            s
        });
        (rt, brisk_server::router(state))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (rt, router) = setup();
    let path = PATHS[selector as usize % PATHS.len()];
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("request");
    let status = rt.block_on(router.clone().oneshot(req)).expect("infallible").status();
    assert!(status.as_u16() < 500, "{path}: {status}");
});
