//! Registry behaviour with the simulated backend, whose load time, failures,
//! memory and inference time are set per model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_backends::BriskLoader;
use brisk_core::{ModelSource, Request, Response};
use brisk_engine::{
    BatchLimits, EngineError, EngineSettings, LoadPolicy, ModelSpec, Registry, Timeline,
};

const MIB: u64 = 1 << 20;

fn spec(name: &str, policy: LoadPolicy, opts: &[(&str, &str)]) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        source: ModelSource {
            backend: "sim".into(),
            path: "/nowhere".into(),
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            adapters: Default::default(),
        },
        policy,
        keep_alive: None,
        pinned: policy == LoadPolicy::Preload,
        max_queue: 64,
        batch: BatchLimits::default(),
        request_timeout: Duration::from_secs(10),
        cache: true,
    }
}

fn settings() -> EngineSettings {
    EngineSettings {
        load_concurrency: 2,
        load_retries: 0,
        retry_backoff: Duration::from_millis(5),
        failure_cooldown: Duration::from_millis(100),
        memory_budget_bytes: None,
    }
}

fn registry(specs: Vec<ModelSpec>, s: EngineSettings) -> (Registry, Arc<BriskLoader>) {
    let loader = Arc::new(BriskLoader::new());
    let r = Registry::new(specs, loader.clone(), s, Timeline::new(Instant::now()))
        .expect("registry builds");
    (r, loader)
}

fn embed(text: &str) -> Request {
    Request::Embed {
        texts: vec![text.to_string()],
        truncate: false,
    }
}

fn state(r: &Registry, m: &str) -> &'static str {
    r.model_status(m).expect("model exists").state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_load() {
    let (r, loader) = registry(
        vec![spec("m", LoadPolicy::Lazy, &[("load_ms", "150")])],
        settings(),
    );
    assert_eq!(state(&r, "m"), "unloaded");
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { r.infer("m", embed(&format!("text {i}"))).await })
        })
        .collect();
    for c in calls {
        assert!(matches!(c.await.expect("task"), Ok(Response::Embed { .. })));
    }
    assert_eq!(loader.sim().attempts("m"), 1, "exactly one load");
    assert_eq!(state(&r, "m"), "ready");
    assert_eq!(r.model_status("m").expect("m").loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_does_not_abort_the_load() {
    let (r, loader) = registry(
        vec![spec("m", LoadPolicy::Lazy, &[("load_ms", "150")])],
        settings(),
    );
    // The caller gives up after 20 ms, long before the load finishes.
    let gave_up = tokio::time::timeout(Duration::from_millis(20), r.infer("m", embed("x"))).await;
    assert!(gave_up.is_err());
    assert_eq!(state(&r, "m"), "loading");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(&r, "m"), "ready");
    assert!(r.infer("m", embed("x")).await.is_ok());
    assert_eq!(loader.sim().attempts("m"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_loading_is_bounded_by_load_concurrency() {
    let specs = (0..5)
        .map(|i| spec(&format!("p{i}"), LoadPolicy::Preload, &[("load_ms", "80")]))
        .collect();
    let (r, loader) = registry(specs, settings());
    r.start();
    assert!(!r.readiness().ready);
    tokio::time::timeout(Duration::from_secs(5), r.wait_ready())
        .await
        .expect("preloads settle");
    assert!(r.readiness().ready);
    assert_eq!(loader.sim().max_concurrent_loads(), 2);
    for i in 0..5 {
        assert_eq!(state(&r, &format!("p{i}")), "ready");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_loads_are_retried_with_backoff() {
    let s = EngineSettings {
        load_retries: 3,
        retry_backoff: Duration::from_millis(20),
        ..settings()
    };
    let (r, loader) = registry(vec![spec("m", LoadPolicy::Lazy, &[("fail_loads", "2")])], s);
    let t0 = Instant::now();
    assert!(r.infer("m", embed("x")).await.is_ok());
    // Two failures: backoffs of 20 ms then 40 ms before the third attempt.
    assert!(
        t0.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(loader.sim().attempts("m"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retries_run_out_requests_get_cooldown_then_a_new_try() {
    let s = EngineSettings {
        load_retries: 1,
        failure_cooldown: Duration::from_millis(150),
        ..settings()
    };
    let (r, loader) = registry(vec![spec("m", LoadPolicy::Lazy, &[("fail_loads", "2")])], s);
    let err = r.infer("m", embed("x")).await.expect_err("load fails");
    assert!(matches!(err, EngineError::Cooldown { .. }), "{err:?}");
    assert!(err.retry_after().expect("retry after") <= Duration::from_millis(150));
    let st = r.model_status("m").expect("m");
    assert_eq!(st.state, "failed");
    assert!(st
        .last_error
        .expect("reason")
        .contains("simulated load failure"));
    // Within the cooldown no new attempt is made.
    assert!(matches!(
        r.infer("m", embed("x")).await,
        Err(EngineError::Cooldown { .. })
    ));
    assert_eq!(loader.sim().attempts("m"), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(r.infer("m", embed("x")).await.is_ok());
    assert_eq!(loader.sim().attempts("m"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_preload_does_not_block_readiness_and_falls_back_to_lazy() {
    let (r, _) = registry(
        vec![
            spec("bad", LoadPolicy::Preload, &[("fail_loads", "1")]),
            spec("good", LoadPolicy::Preload, &[("load_ms", "20")]),
        ],
        settings(),
    );
    r.start();
    r.wait_ready().await;
    let ready = r.readiness();
    assert!(ready.ready);
    assert_eq!(ready.failed, vec!["bad".to_string()]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(r.infer("bad", embed("x")).await.is_ok(), "lazy retry works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_models_load_after_start_without_holding_readiness() {
    let (r, _) = registry(
        vec![spec("bg", LoadPolicy::Background, &[("load_ms", "100")])],
        settings(),
    );
    r.start();
    assert!(r.readiness().ready, "nothing to preload");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(state(&r, "bg"), "loading");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state(&r, "bg"), "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_evicts_the_least_recently_used_unpinned_model() {
    let s = EngineSettings {
        memory_budget_bytes: Some(5 * MIB),
        ..settings()
    };
    let two = (2 * MIB).to_string();
    let mut pinned = spec("pinned", LoadPolicy::Lazy, &[("memory_bytes", &two)]);
    pinned.pinned = true;
    let (r, _) = registry(
        vec![
            pinned,
            spec("a", LoadPolicy::Lazy, &[("memory_bytes", &two)]),
            spec("b", LoadPolicy::Lazy, &[("memory_bytes", &two)]),
        ],
        s,
    );
    r.infer("pinned", embed("x")).await.expect("pinned loads");
    r.infer("a", embed("x")).await.expect("a loads");
    // 4 MiB used; b needs 2 more: a (unpinned, least recently used) goes.
    r.infer("b", embed("x")).await.expect("b loads");
    assert_eq!(state(&r, "a"), "evicted");
    assert_eq!(r.model_status("a").expect("a").last_unload, Some("evicted"));
    assert_eq!(state(&r, "pinned"), "ready");
    assert_eq!(state(&r, "b"), "ready");
    // Using a again evicts b, never the pinned model.
    r.infer("a", embed("x")).await.expect("a reloads");
    assert_eq!(state(&r, "a"), "ready");
    assert_eq!(state(&r, "b"), "evicted");
    assert_eq!(state(&r, "pinned"), "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_larger_than_the_budget_fails_clearly() {
    let s = EngineSettings {
        memory_budget_bytes: Some(MIB),
        ..settings()
    };
    let (r, _) = registry(
        vec![spec(
            "big",
            LoadPolicy::Lazy,
            &[("memory_bytes", &(2 * MIB).to_string())],
        )],
        s,
    );
    let err = r.infer("big", embed("x")).await.expect_err("too big");
    assert!(err.to_string().contains("budget"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_models_are_unloaded_after_keep_alive() {
    let mut m = spec("m", LoadPolicy::Lazy, &[]);
    m.keep_alive = Some(Duration::from_millis(50));
    let mut pinned = spec("p", LoadPolicy::Lazy, &[]);
    pinned.keep_alive = Some(Duration::from_millis(50));
    pinned.pinned = true;
    let (r, _) = registry(vec![m, pinned], settings());
    r.infer("m", embed("x")).await.expect("loads");
    r.infer("p", embed("x")).await.expect("loads");
    assert!(r.reap_idle().is_empty(), "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(r.reap_idle(), vec!["m".to_string()]);
    assert_eq!(state(&r, "m"), "unloaded");
    assert_eq!(r.model_status("m").expect("m").last_unload, Some("idle"));
    assert_eq!(state(&r, "p"), "ready");
    // The next request simply loads it again.
    assert!(r.infer("m", embed("x")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_queue_full() {
    let mut m = spec("m", LoadPolicy::Lazy, &[("infer_ms", "100")]);
    m.max_queue = 2;
    m.batch.max_requests = 1;
    let (r, _) = registry(vec![m], settings());
    r.load("m").await.expect("loads");
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.infer("m", embed("x")).await })
        })
        .collect();
    let mut ok = 0;
    let mut full = 0;
    for c in calls {
        match c.await.expect("task") {
            Ok(_) => ok += 1,
            Err(EngineError::QueueFull { .. }) => full += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(full, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_their_deadline_fail_with_deadline_exceeded() {
    let mut m = spec("m", LoadPolicy::Lazy, &[("infer_ms", "200")]);
    m.request_timeout = Duration::from_millis(50);
    let (r, _) = registry(vec![m], settings());
    r.load("m").await.expect("loads");
    let err = r.infer("m", embed("x")).await.expect_err("too slow");
    assert!(
        matches!(err, EngineError::DeadlineExceeded { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_panic_fails_the_request_and_the_model_reloads() {
    let (r, loader) = registry(vec![spec("m", LoadPolicy::Lazy, &[])], settings());
    let err = r.infer("m", embed("__panic__")).await.expect_err("panics");
    assert!(matches!(err, EngineError::Panicked { .. }), "{err:?}");
    // The worker reports its death asynchronously.
    for _ in 0..100 {
        if state(&r, "m") == "unloaded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(state(&r, "m"), "unloaded");
    assert!(r.infer("m", embed("fine")).await.is_ok());
    assert_eq!(loader.sim().attempts("m"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unloading_lets_queued_requests_finish() {
    let mut m = spec("m", LoadPolicy::Lazy, &[("infer_ms", "50")]);
    m.batch.max_requests = 1;
    let (r, _) = registry(vec![m], settings());
    r.load("m").await.expect("loads");
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.infer("m", embed("x")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.unload("m").expect("unloads");
    for c in calls {
        assert!(c.await.expect("task").is_ok(), "accepted work is not lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_any_load() {
    let (r, loader) = registry(
        vec![spec("m", LoadPolicy::Lazy, &[("max_tokens", "3")])],
        settings(),
    );
    let err = r
        .infer(
            "m",
            Request::Embed {
                texts: vec![],
                truncate: false,
            },
        )
        .await
        .expect_err("empty");
    assert!(matches!(err, EngineError::InvalidInput(_)));
    assert_eq!(loader.sim().attempts("m"), 0, "no load for a bad request");
    assert!(matches!(
        r.infer("nope", embed("x")).await,
        Err(EngineError::UnknownModel(_))
    ));
    let err = r
        .infer("m", embed("one two three four"))
        .await
        .expect_err("too long");
    assert!(err.to_string().contains("at most 3"), "{err}");
}
