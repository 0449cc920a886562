//! The whole pipeline on synthetic data with known topics: five tight
//! directions in 48 dimensions, documents whose words name their topic.

use brisk_topics::rng::Rng;
use brisk_topics::{analyze, NrTopics, StopWords, TopicParams, TopicsError};

const WORDS: [&str; 5] = ["telescope", "recipe", "goalkeeper", "vaccine", "compiler"];

fn corpus(per_topic: usize) -> (Vec<String>, Vec<Vec<f32>>, Vec<usize>) {
    let mut rng = Rng::new(11);
    let dim = 48;
    let centres: Vec<Vec<f64>> = (0..5)
        .map(|_| (0..dim).map(|_| rng.normal()).collect())
        .collect();
    let (mut docs, mut embs, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..per_topic * 5 {
        let t = i % 5;
        embs.push(
            centres[t]
                .iter()
                .map(|c| (c + 0.25 * rng.normal()) as f32)
                .collect(),
        );
        docs.push(format!("the {} and the {} number {i}", WORDS[t], WORDS[t]));
        truth.push(t);
    }
    (docs, embs, truth)
}

#[test]
fn finds_the_known_topics_with_their_words_and_is_reproducible() {
    let (docs, embs, truth) = corpus(40);
    let params = TopicParams {
        min_topic_size: 10,
        ..Default::default()
    };
    let mut fractions = Vec::new();
    let model = analyze(&docs, &embs, &params, &mut |f| {
        fractions.push(f);
        true
    })
    .expect("analyze");
    let found: Vec<_> = model.topics.iter().filter(|t| t.id >= 0).collect();
    assert_eq!(found.len(), 5, "{:?}", model.topics);
    // Each topic is one true class, named by its word, stop words dropped.
    for topic in &found {
        let members: Vec<usize> = (0..docs.len())
            .filter(|&i| model.documents[i].topic == topic.id)
            .collect();
        let class = truth[members[0]];
        assert!(
            members.iter().all(|&i| truth[i] == class),
            "topic {} mixes classes",
            topic.id
        );
        assert_eq!(topic.keywords[0].word, WORDS[class]);
        assert!(topic
            .keywords
            .iter()
            .all(|k| k.word != "the" && k.word != "and"));
        assert_eq!(topic.representative_docs.len(), 3);
        assert!(topic
            .representative_doc_ids
            .iter()
            .all(|&i| truth[i] == class));
        assert_eq!(topic.size, members.len());
    }
    // Sorted by size, largest first.
    assert!(found.windows(2).all(|w| w[0].size >= w[1].size));
    assert!(model
        .documents
        .iter()
        .all(|d| (0.0..=1.0).contains(&d.probability)));
    // Real progress: many distinct fractions, increasing, ending at 1.
    assert!(fractions.len() > 20, "{fractions:?}");
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(fractions.last(), Some(&1.0));
    // Same seed, same answer.
    let again = analyze(&docs, &embs, &params, &mut |_| true).expect("analyze");
    assert_eq!(model, again);
}

#[test]
fn nr_topics_merges_and_stop_words_none_keeps_them() {
    let (docs, embs, _) = corpus(30);
    let params = TopicParams {
        min_topic_size: 10,
        nr_topics: NrTopics::Count(2),
        stop_words: StopWords::None,
        ..Default::default()
    };
    let model = analyze(&docs, &embs, &params, &mut |_| true).expect("analyze");
    let ids: Vec<i64> = model.topics.iter().map(|t| t.id).collect();
    // Two topics counting −1 if there are outliers, as in BERTopic.
    assert!(ids == [-1, 0] || ids == [0, 1], "{ids:?}");
    assert!(model
        .topics
        .iter()
        .any(|t| t.keywords.iter().any(|k| k.word == "the")));
}

#[test]
fn cancelling_stops_and_bad_input_is_refused() {
    let (docs, embs, _) = corpus(20);
    let params = TopicParams {
        min_topic_size: 5,
        ..Default::default()
    };
    let err = analyze(&docs, &embs, &params, &mut |f| f < 0.5).expect_err("cancelled");
    assert_eq!(err, TopicsError::Cancelled);
    let err = analyze(&docs, &embs[1..], &params, &mut |_| true).expect_err("mismatch");
    assert!(matches!(err, TopicsError::Invalid(_)));
    let mut bad = embs.clone();
    bad[3][0] = f32::NAN;
    assert!(analyze(&docs, &bad, &params, &mut |_| true).is_err());
}
