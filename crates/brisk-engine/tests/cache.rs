//! The result cache on its own (tiers, TTL, budget, single-flight, Redis
//! failover) and in front of the registry with the simulated backend.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_backends::BriskLoader;
use brisk_core::{
    ChatMessage, GenerateParams, GenerateRequest, ModelSource, Prompt, Request, Response,
};
use brisk_engine::cache::{DiskSettings, RedisSettings};
use brisk_engine::{
    BatchLimits, CacheMode, CacheSettings, CacheStatus, EngineSettings, LoadPolicy, ModelSpec,
    Registry, ResultCache, Timeline,
};

fn vectors(n: usize, value: f32) -> Response {
    Response::Embed {
        vectors: vec![vec![value; n]],
        prompt_tokens: 3,
    }
}

fn key(i: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_le_bytes());
    k
}

fn memory_only(max_bytes: u64, ttl: Duration) -> ResultCache {
    ResultCache::new(CacheSettings {
        max_bytes,
        ttl,
        ..Default::default()
    })
    .expect("cache")
}

async fn fill(
    cache: &ResultCache,
    k: [u8; 32],
    r: Response,
    calls: &AtomicUsize,
) -> (Response, CacheStatus) {
    cache
        .get_or_compute(k, CacheMode::Use, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(r)
        })
        .await
        .expect("compute succeeds")
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_ttl() {
    let cache = memory_only(1 << 20, Duration::from_secs(60));
    let calls = AtomicUsize::new(0);
    assert_eq!(
        fill(&cache, key(1), vectors(4, 1.0), &calls).await.1,
        CacheStatus::Miss
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        fill(&cache, key(1), vectors(4, 1.0), &calls).await.1,
        CacheStatus::Hit
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        fill(&cache, key(1), vectors(4, 1.0), &calls).await.1,
        CacheStatus::Miss,
        "expired after 61 s"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn memory_tier_stays_within_its_byte_budget() {
    let budget = 64 * 1024;
    let cache = memory_only(budget, Duration::from_secs(600));
    let calls = AtomicUsize::new(0);
    // 200 entries of ~1.6 KB (below the compression threshold): 320 KB.
    for i in 0..200 {
        fill(&cache, key(i), vectors(400, i as f32), &calls).await;
    }
    let used = cache.memory_bytes().await;
    assert!(used <= budget, "{used} > {budget}");
    assert!(
        used > budget / 2,
        "the budget is used, not just emptied: {used}"
    );
}

#[tokio::test]
async fn large_values_are_compressed_and_round_trip() {
    let cache = memory_only(1 << 20, Duration::from_secs(600));
    let calls = AtomicUsize::new(0);
    // 20 000 equal floats: 80 KB raw, a few hundred bytes in lz4.
    let big = Response::Embed {
        vectors: vec![vec![0.25; 10_000], vec![-1.5; 10_000]],
        prompt_tokens: 9,
    };
    fill(&cache, key(7), big.clone(), &calls).await;
    let (again, status) = fill(&cache, key(7), vectors(1, 0.0), &calls).await;
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(again, big, "decompressed value equals the original");
    let used = cache.memory_bytes().await;
    assert!(used < 10_000, "stored compressed: {used} bytes");
}

#[tokio::test]
async fn identical_concurrent_misses_compute_once() {
    let cache = Arc::new(memory_only(1 << 20, Duration::from_secs(600)));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, calls) = (cache.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute(key(3), CacheMode::Use, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, String>(vectors(3, 3.0))
                })
                .await
                .expect("ok")
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (r, s) = t.await.expect("task");
        assert_eq!(r, vectors(3, 3.0));
        statuses.push(s);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one computation");
    assert_eq!(
        statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
        1
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == CacheStatus::Hit).count(),
        9
    );
}

#[tokio::test]
async fn a_cancelled_leader_hands_over_to_a_waiter() {
    let cache = Arc::new(memory_only(1 << 20, Duration::from_secs(600)));
    let c = cache.clone();
    let leader = tokio::spawn(async move {
        c.get_or_compute(key(5), CacheMode::Use, || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, String>(vectors(1, 0.0))
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c = cache.clone();
    let waiter = tokio::spawn(async move {
        c.get_or_compute(key(5), CacheMode::Use, || async {
            Ok::<_, String>(vectors(2, 2.0))
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    let (r, status) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("waiter is not stuck behind the cancelled leader")
        .expect("task")
        .expect("ok");
    assert_eq!(status, CacheStatus::Miss);
    assert_eq!(r, vectors(2, 2.0));
}

#[tokio::test]
async fn errors_are_not_cached_and_modes_are_honoured() {
    let cache = memory_only(1 << 20, Duration::from_secs(600));
    let err = cache
        .get_or_compute(key(9), CacheMode::Use, || async {
            Err::<Response, _>("boom".to_string())
        })
        .await;
    assert_eq!(err, Err("boom".to_string()));
    let calls = AtomicUsize::new(0);
    assert_eq!(
        fill(&cache, key(9), vectors(1, 1.0), &calls).await.1,
        CacheStatus::Miss
    );
    // no-store: computed, not read.
    let (_, s) = cache
        .get_or_compute(key(9), CacheMode::Skip, || async {
            Ok::<_, String>(vectors(1, 5.0))
        })
        .await
        .expect("ok");
    assert_eq!(s, CacheStatus::Bypass);
    // no-cache: computed and stored, so the next lookup sees the new value.
    let (r, s) = cache
        .get_or_compute(key(9), CacheMode::Refresh, || async {
            Ok::<_, String>(vectors(1, 6.0))
        })
        .await
        .expect("ok");
    assert_eq!((r, s), (vectors(1, 6.0), CacheStatus::Bypass));
    let (r, s) = fill(&cache, key(9), vectors(1, 0.0), &calls).await;
    assert_eq!((r, s), (vectors(1, 6.0), CacheStatus::Hit));
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("brisk-cache-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[tokio::test]
async fn disk_tier_survives_a_restart() {
    let dir = temp_dir("restart");
    let settings = CacheSettings {
        disk: Some(DiskSettings {
            path: dir.join("cache.sqlite"),
            max_bytes: 1 << 20,
        }),
        ..Default::default()
    };
    let calls = AtomicUsize::new(0);
    {
        let cache = ResultCache::new(settings.clone()).expect("cache");
        fill(&cache, key(1), vectors(8, 8.0), &calls).await;
    }
    let cache = ResultCache::new(settings).expect("reopened");
    let (r, s) = fill(&cache, key(1), vectors(1, 0.0), &calls).await;
    assert_eq!((r, s), (vectors(8, 8.0), CacheStatus::Hit));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats().await;
    assert_eq!(stats["tiers"]["disk"]["hits"], 1, "{stats}");
    assert_eq!(stats["tiers"]["memory"]["misses"], 1, "{stats}");
    // Promoted: the next hit is from memory.
    fill(&cache, key(1), vectors(1, 0.0), &calls).await;
    assert_eq!(cache.stats().await["tiers"]["memory"]["hits"], 1);
    assert!(cache.clear().await.is_empty());
    assert_eq!(
        fill(&cache, key(1), vectors(1, 0.0), &calls).await.1,
        CacheStatus::Miss
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A redis-server of our own on a free port, stopped on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-deps installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_redis(url: &str) -> ResultCache {
    ResultCache::new(CacheSettings {
        redis: Some(RedisSettings {
            url: url.to_string(),
            timeout: Duration::from_millis(200),
            retry_after: Duration::from_millis(300),
        }),
        ..Default::default()
    })
    .expect("cache")
}

#[tokio::test]
async fn redis_shares_results_between_instances_and_failures_degrade() {
    let mut server = RedisServer::start();
    let a = with_redis(&server.url());
    let b = with_redis(&server.url());
    let calls = AtomicUsize::new(0);
    fill(&a, key(42), vectors(16, 4.2), &calls).await;
    // The Redis write is in the background: wait for it to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.stats().await["tiers"]["redis"]["stores"] != 1 {
        assert!(Instant::now() < deadline, "A never wrote to Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (r, s) = fill(&b, key(42), vectors(1, 0.0), &calls).await;
    assert_eq!(s, CacheStatus::Hit);
    assert_eq!(r, vectors(16, 4.2), "instance B reads A's result");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.stats().await["tiers"]["redis"]["hits"], 1);

    // Redis goes away: requests still succeed, promptly, counted as errors.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let started = Instant::now();
    for i in 0..20 {
        let (_, s) = fill(&a, key(1000 + i), vectors(2, 1.0), &calls).await;
        assert_eq!(s, CacheStatus::Miss);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a dead Redis is skipped, not waited on per request: {:?}",
        started.elapsed()
    );
    let st = a.stats().await;
    assert!(st["tiers"]["redis"]["errors"].as_u64() >= Some(1), "{st}");
    assert_eq!(st["tiers"]["redis"]["up"], false, "{st}");
    // The local tier still answers.
    assert_eq!(
        fill(&a, key(1000), vectors(1, 0.0), &calls).await.1,
        CacheStatus::Hit
    );
}

fn sim_spec(name: &str, opts: &[(&str, &str)], cache: bool) -> ModelSpec {
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
        policy: LoadPolicy::Lazy,
        keep_alive: None,
        pinned: false,
        max_queue: 64,
        batch: BatchLimits::default(),
        request_timeout: Duration::from_secs(10),
        cache,
    }
}

fn chat(text: &str, temperature: f64) -> Request {
    Request::Generate(GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::new("user".into(), text.into())]),
        params: GenerateParams {
            max_tokens: 4,
            temperature,
            ..Default::default()
        },
        sink: None,
    })
}

#[tokio::test]
async fn registry_answers_repeats_from_the_cache() {
    let loader = Arc::new(BriskLoader::new());
    let registry = Registry::new(
        vec![
            sim_spec("emb", &[], true),
            sim_spec("nocache", &[], false),
            sim_spec("gen", &[("task", "generation")], true),
        ],
        loader.clone(),
        EngineSettings::default(),
        Timeline::new(Instant::now()),
    )
    .expect("registry");
    registry.set_cache(Arc::new(memory_only(1 << 20, Duration::from_secs(60))));
    let embed = || Request::Embed {
        texts: vec!["same words".into()],
        truncate: false,
    };
    let (first, s1) = registry
        .infer_with("emb", embed(), CacheMode::Use)
        .await
        .expect("ok");
    let (second, s2) = registry
        .infer_with("emb", embed(), CacheMode::Use)
        .await
        .expect("ok");
    assert_eq!((s1, s2), (CacheStatus::Miss, CacheStatus::Hit));
    assert_eq!(first, second);
    let (_, s) = registry
        .infer_with("nocache", embed(), CacheMode::Use)
        .await
        .expect("ok");
    assert_eq!(s, CacheStatus::Bypass, "model with cache = false");

    let before = loader.sim().tokens_generated();
    let (_, s) = registry
        .infer_with("gen", chat("hi", 0.0), CacheMode::Use)
        .await
        .expect("ok");
    assert_eq!(s, CacheStatus::Miss);
    let after_first = loader.sim().tokens_generated();
    assert!(after_first > before);
    let (_, s) = registry
        .infer_with("gen", chat("hi", 0.0), CacheMode::Use)
        .await
        .expect("ok");
    assert_eq!(s, CacheStatus::Hit);
    assert_eq!(
        loader.sim().tokens_generated(),
        after_first,
        "no tokens generated on a hit"
    );
    assert!(!registry.would_cache("gen", &chat("hi", 0.8), CacheMode::Use));
    let (_, s) = registry
        .infer_with("gen", chat("hi", 0.8), CacheMode::Use)
        .await
        .expect("ok");
    assert_eq!(
        s,
        CacheStatus::Bypass,
        "sampling without a seed is never cached"
    );
    // Wrong task is still an error, not a cache lookup.
    assert!(registry
        .infer_with("emb", chat("x", 0.0), CacheMode::Use)
        .await
        .is_err());
}
