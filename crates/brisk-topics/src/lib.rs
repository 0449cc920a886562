//! Topic analysis over embedded documents, BERTopic's steps in Rust:
//! reduce the embeddings with UMAP (5 dimensions, cosine neighbours),
//! cluster them with HDBSCAN (noise = topic −1), describe each topic by its
//! class-based TF-IDF keywords and most typical documents, optionally merge
//! topics (`nr_topics`), and number topics by size as BERTopic does.
//!
//! No HTTP, no runtime: the engine embeds the documents (through the
//! registry, so caching and batching apply) and hands the vectors here.
//! Every random choice draws from one seeded generator, so a seed gives the
//! same answer on every run.

pub mod ctfidf;
pub mod eigen;
pub mod knn;
mod reduce;
pub mod rng;
mod stop_words;
pub mod umap;

use std::collections::BTreeMap;

use ndarray016::Array2 as Array2v16;
use serde::Serialize;

pub use ctfidf::StopWords;

/// How many topics to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NrTopics {
    /// As HDBSCAN found them.
    #[default]
    Keep,
    /// Merge topics whose centroids HDBSCAN groups together (BERTopic's
    /// `"auto"`).
    Auto,
    /// Merge the closest topics (average linkage on cosine distance of the
    /// topic centroids) until this many remain, counting the outlier topic
    /// −1 when there is one, as BERTopic counts.
    Count(usize),
}

#[derive(Debug, Clone)]
pub struct TopicParams {
    /// HDBSCAN's `min_cluster_size`: the smallest topic.
    pub min_topic_size: usize,
    pub nr_topics: NrTopics,
    /// Keywords per topic.
    pub top_n_words: usize,
    pub stop_words: StopWords,
    pub seed: u64,
    /// Representative documents per topic.
    pub representative_docs: usize,
    pub umap: umap::UmapParams,
}

impl Default for TopicParams {
    fn default() -> Self {
        TopicParams {
            min_topic_size: 10,
            nr_topics: NrTopics::Keep,
            top_n_words: 10,
            stop_words: StopWords::English,
            seed: 42,
            representative_docs: 3,
            umap: umap::UmapParams::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopicsError {
    /// The request cannot be served as given (a 400 at the HTTP edge).
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Keyword {
    pub word: String,
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topic {
    /// −1 holds the outliers; other topics are numbered by size, largest 0.
    pub id: i64,
    pub size: usize,
    pub keywords: Vec<Keyword>,
    pub representative_docs: Vec<String>,
    /// Indices into the request's documents of `representative_docs`.
    pub representative_doc_ids: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assignment {
    pub topic: i64,
    /// HDBSCAN's membership strength of the document in its topic (0 for
    /// outliers).
    pub probability: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicModel {
    pub topics: Vec<Topic>,
    pub documents: Vec<Assignment>,
}

/// Checks that do not need the embeddings: the HTTP edge runs them before
/// embedding anything.
pub fn validate(documents: &[String], params: &TopicParams) -> Result<(), TopicsError> {
    if documents.is_empty() {
        return Err(TopicsError::Invalid("`documents` must not be empty".into()));
    }
    if let Some(i) = documents.iter().position(|d| d.trim().is_empty()) {
        return Err(TopicsError::Invalid(format!("`documents[{i}]` is empty")));
    }
    if params.min_topic_size < 2 {
        return Err(TopicsError::Invalid(
            "`min_topic_size` must be at least 2".into(),
        ));
    }
    if documents.len() < 2 * params.min_topic_size {
        return Err(TopicsError::Invalid(format!(
            "topic analysis needs at least min_topic_size × 2 = {} documents, got {}",
            2 * params.min_topic_size,
            documents.len()
        )));
    }
    if params.top_n_words == 0 || params.top_n_words > 100 {
        return Err(TopicsError::Invalid(
            "`top_n_words` must be between 1 and 100".into(),
        ));
    }
    if let NrTopics::Count(n) = params.nr_topics {
        if n < 1 {
            return Err(TopicsError::Invalid(
                "`nr_topics` must be \"auto\" or at least 1".into(),
            ));
        }
    }
    Ok(())
}

/// Progress fractions of the steps after embedding.
const KNN_END: f32 = 0.15;
const UMAP_END: f32 = 0.85;
const HDBSCAN_END: f32 = 0.93;

/// Topics of `documents` given their `embeddings` (one per document, same
/// order). `progress` receives the fraction done (0..=1) and returns false to
/// cancel.
pub fn analyze(
    documents: &[String],
    embeddings: &[Vec<f32>],
    params: &TopicParams,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<TopicModel, TopicsError> {
    validate(documents, params)?;
    if embeddings.len() != documents.len() {
        return Err(TopicsError::Invalid(format!(
            "{} embeddings for {} documents",
            embeddings.len(),
            documents.len()
        )));
    }
    let dim = embeddings[0].len();
    if dim == 0
        || embeddings
            .iter()
            .any(|e| e.len() != dim || e.iter().any(|v| !v.is_finite()))
    {
        return Err(TopicsError::Invalid(
            "embeddings must be finite and of one dimension".into(),
        ));
    }
    let n = documents.len();
    let unit = knn::normalised(embeddings);
    let k = params.umap.n_neighbors.min(n - 1).max(2);
    let (indices, distances) =
        knn::cosine_knn(&unit, k, &mut |f| progress(f * KNN_END)).ok_or(TopicsError::Cancelled)?;
    let reduced = umap::embed(
        &unit,
        &indices,
        &distances,
        &params.umap,
        params.seed,
        &mut |f| progress(KNN_END + f * (UMAP_END - KNN_END)),
    )
    .ok_or(TopicsError::Cancelled)?;

    let (labels, probabilities) = cluster(&reduced, params.min_topic_size)?;
    if !progress(HDBSCAN_END) {
        return Err(TopicsError::Cancelled);
    }

    let labels = sort_by_size(&reduce::reduce(&unit, &labels, params.nr_topics));

    let counts = ctfidf::Counts::new(documents, &params.stop_words);
    let ctfidf = ctfidf::ClassTfidf::fit(&counts, &labels);
    let mut rng = rng::Rng::new(params.seed.wrapping_add(1));
    let mut sizes: BTreeMap<i64, usize> = BTreeMap::new();
    for &l in &labels {
        *sizes.entry(l).or_default() += 1;
    }
    let topics = sizes
        .into_iter()
        .map(|(id, size)| {
            let keywords = ctfidf
                .top_words(&counts, id, params.top_n_words)
                .into_iter()
                .map(|(word, weight)| Keyword { word, weight })
                .collect();
            let ids =
                ctfidf.representative(&counts, &labels, id, params.representative_docs, &mut rng);
            Topic {
                id,
                size,
                keywords,
                representative_docs: ids.iter().map(|&i| documents[i].clone()).collect(),
                representative_doc_ids: ids,
            }
        })
        .collect();
    let documents = labels
        .iter()
        .zip(&probabilities)
        .map(|(&topic, &p)| Assignment {
            topic,
            probability: if topic < 0 { 0.0 } else { p },
        })
        .collect();
    progress(1.0);
    Ok(TopicModel { topics, documents })
}

/// HDBSCAN as BERTopic configures it (euclidean, excess of mass,
/// `min_samples = min_cluster_size`): a label per point (−1 noise) and its
/// membership probability.
pub fn cluster(
    points: &[Vec<f32>],
    min_topic_size: usize,
) -> Result<(Vec<i64>, Vec<f64>), TopicsError> {
    let n = points.len();
    let dim = points.first().map_or(0, Vec::len);
    let flat: Vec<f64> = points.iter().flatten().map(|&v| v as f64).collect();
    let data = Array2v16::from_shape_vec((n, dim), flat)
        .map_err(|e| TopicsError::Invalid(e.to_string()))?;
    let mut hdb = hdbscan_rs::Hdbscan::new(hdbscan_rs::HdbscanParams {
        min_cluster_size: min_topic_size,
        ..Default::default()
    });
    let labels = hdb
        .fit_predict(&data.view())
        .map_err(|e| TopicsError::Invalid(e.to_string()))?;
    let probabilities = match hdb.condensed_tree() {
        Some(tree) => membership(tree, &labels),
        None => vec![0.0; n],
    };
    Ok((labels.into_iter().map(i64::from).collect(), probabilities))
}

/// Membership probabilities as Python's `hdbscan` (the library BERTopic
/// uses) computes `probabilities_`: a point's λ (1/distance at which it left
/// the tree), capped at and divided by the largest λ among the direct
/// children of its selected cluster. hdbscan-rs's own probabilities use
/// another formula, (λ − λ_birth)/(λ_max − λ_birth) over the whole
/// subtree, and differ from Python's by 0.44 on average on our corpus.
fn membership(tree: &[hdbscan_rs::CondensedTreeEdge], labels: &[i32]) -> Vec<f64> {
    use std::collections::{HashMap, HashSet};
    let n = labels.len();
    let selected: HashSet<usize> = hdbscan_rs::cluster_selection::select_clusters(
        tree,
        n,
        hdbscan_rs::ClusterSelectionMethod::Eom,
        0.0,
        false,
    )
    .selected_clusters;
    let mut parent_of: HashMap<usize, usize> = HashMap::new();
    let mut deaths: HashMap<usize, f64> = HashMap::new();
    for e in tree {
        if e.child >= n {
            parent_of.insert(e.child, e.parent);
        }
        let d = deaths.entry(e.parent).or_insert(0.0);
        *d = d.max(e.lambda_val);
    }
    let mut out = vec![0.0; n];
    for e in tree.iter().filter(|e| e.child < n && labels[e.child] >= 0) {
        let mut cluster = e.parent;
        while !selected.contains(&cluster) {
            match parent_of.get(&cluster) {
                Some(&p) => cluster = p,
                None => break,
            }
        }
        let max_lambda = deaths.get(&cluster).copied().unwrap_or(0.0);
        out[e.child] = if max_lambda == 0.0 || !e.lambda_val.is_finite() {
            1.0
        } else {
            e.lambda_val.min(max_lambda) / max_lambda
        };
    }
    out
}

/// Renumber topics by size, largest first (ties: smaller old id first);
/// −1 stays −1.
fn sort_by_size(labels: &[i64]) -> Vec<i64> {
    let mut sizes: BTreeMap<i64, usize> = BTreeMap::new();
    for &l in labels.iter().filter(|&&l| l >= 0) {
        *sizes.entry(l).or_default() += 1;
    }
    let mut order: Vec<(i64, usize)> = sizes.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let map: BTreeMap<i64, i64> = order
        .iter()
        .enumerate()
        .map(|(new, &(old, _))| (old, new as i64))
        .collect();
    labels
        .iter()
        .map(|l| map.get(l).copied().unwrap_or(-1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_numbered_by_size() {
        assert_eq!(
            sort_by_size(&[3, 3, -1, 5, 5, 5, 3, 3, 7]),
            [0, 0, -1, 1, 1, 1, 0, 0, 2]
        );
    }

    #[test]
    fn validation_messages() {
        let docs: Vec<String> = (0..5).map(|i| format!("doc {i}")).collect();
        let p = TopicParams {
            min_topic_size: 3,
            ..Default::default()
        };
        let err = validate(&docs, &p).expect_err("too few");
        assert!(err.to_string().contains("min_topic_size × 2 = 6"), "{err}");
        let mut docs2 = docs.clone();
        docs2.push(" ".into());
        let p = TopicParams {
            min_topic_size: 2,
            ..Default::default()
        };
        assert_eq!(
            validate(&docs2, &p),
            Err(TopicsError::Invalid("`documents[5]` is empty".into()))
        );
        assert!(validate(&[], &p).is_err());
        assert!(validate(&docs, &p).is_ok());
    }
}
