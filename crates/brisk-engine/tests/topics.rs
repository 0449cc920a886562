//! Topic analysis through the registry: embeddings come from a (simulated)
//! embeddings model via the cache, progress is fractional, and wrong models
//! are refused before any work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_backends::BriskLoader;
use brisk_core::ModelSource;
use brisk_engine::topics::{analyze, TopicParams};
use brisk_engine::{
    BatchLimits, EngineError, EngineSettings, LoadPolicy, ModelSpec, Registry, Timeline,
};
use parking_lot::Mutex;

fn spec(name: &str, task: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        source: ModelSource {
            backend: "sim".into(),
            path: "/nowhere".into(),
            options: [("task".to_string(), task.to_string())]
                .into_iter()
                .collect(),
            adapters: Default::default(),
        },
        policy: LoadPolicy::Lazy,
        keep_alive: None,
        pinned: false,
        max_queue: 64,
        batch: BatchLimits::default(),
        request_timeout: Duration::from_secs(10),
        cache: true,
    }
}

fn registry() -> Registry {
    Registry::new(
        vec![spec("emb", "embeddings"), spec("gen", "generation")],
        Arc::new(BriskLoader::new()),
        EngineSettings::default(),
        Timeline::new(Instant::now()),
    )
    .expect("registry")
}

#[tokio::test]
async fn embeds_through_the_registry_with_fractional_progress() {
    let registry = registry();
    let docs: Vec<String> = (0..150)
        .map(|i| format!("document number {i} about things"))
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let params = TopicParams {
        min_topic_size: 5,
        ..Default::default()
    };
    let model = analyze(
        &registry,
        "emb",
        docs.clone(),
        params.clone(),
        Arc::new(move |f| sink.lock().push(f)),
    )
    .await
    .expect("topics");
    assert_eq!(model.documents.len(), docs.len());
    assert_eq!(
        model.topics.iter().map(|t| t.size).sum::<usize>(),
        docs.len()
    );
    let seen = seen.lock().clone();
    // Three embedding chunks, then the analysis steps: strictly between 0
    // and 1 many times, never going back, ending at 1.
    assert!(
        seen.iter().filter(|&&f| f > 0.0 && f < 1.0).count() > 10,
        "{seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&1.0));
    // Same seed: same answer (the second run's embeddings come from the cache).
    let again = analyze(&registry, "emb", docs, params, Arc::new(|_| ()))
        .await
        .expect("topics");
    assert_eq!(model, again);
}

#[tokio::test]
async fn wrong_models_and_bad_input_are_refused() {
    let registry = registry();
    let docs: Vec<String> = (0..30).map(|i| format!("doc {i}")).collect();
    let params = TopicParams::default();
    let err = analyze(
        &registry,
        "gen",
        docs.clone(),
        params.clone(),
        Arc::new(|_| ()),
    )
    .await
    .expect_err("task");
    assert!(matches!(err, EngineError::WrongTask { .. }), "{err:?}");
    let err = analyze(
        &registry,
        "nope",
        docs.clone(),
        params.clone(),
        Arc::new(|_| ()),
    )
    .await
    .expect_err("unknown");
    assert!(matches!(err, EngineError::UnknownModel(_)), "{err:?}");
    // 30 documents < 2 × min_topic_size (10) is fine; 15 is not.
    let err = analyze(
        &registry,
        "emb",
        docs[..15].to_vec(),
        params,
        Arc::new(|_| ()),
    )
    .await
    .expect_err("few");
    assert!(err.to_string().contains("min_topic_size × 2 = 20"), "{err}");
}
