//! The result cache: deterministic requests are answered from earlier
//! results instead of running the model again.
//!
//! Three tiers, looked up in order, each hit promoted into the faster ones:
//! 1. memory (moka, weighed in bytes, TTL; large values lz4-compressed),
//! 2. disk (SQLite in WAL mode; survives restarts; bounded in bytes),
//! 3. Redis (optional; shared between instances; degrades to a miss on any
//!    error or timeout).
//!
//! Identical concurrent misses compute once: the first caller becomes the
//! leader and runs the model, the others wait for it and then read its
//! stored result. A leader that fails or is cancelled (its client left)
//! hands over: a waiter finds no entry and becomes the next leader.

mod disk;
mod key;
mod redis_tier;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brisk_core::Response;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

pub use key::{cache_key, deterministic, revision, storable, Key};

/// Where a response came from, for the `x-brisk-cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    Hit,
    Miss,
    /// Not looked up: caching is off for the model or the request, or the
    /// request is not deterministic.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// What the client asked for (`Cache-Control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    #[default]
    Use,
    /// `no-cache`: do not answer from the cache, but store the fresh result.
    Refresh,
    /// `no-store`: neither read nor write.
    Skip,
}

#[derive(Debug, Clone)]
pub struct DiskSettings {
    pub path: PathBuf,
    pub max_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Bound on every Redis exchange.
    pub timeout: Duration,
    /// After a failure, Redis is skipped for this long.
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Budget of the memory tier, in bytes of stored values (+ overhead).
    pub max_bytes: u64,
    pub ttl: Duration,
    /// Values at least this large are stored lz4-compressed.
    pub compress_min_bytes: usize,
    pub disk: Option<DiskSettings>,
    pub redis: Option<RedisSettings>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            ttl: Duration::from_secs(3600),
            compress_min_bytes: 4096,
            disk: None,
            redis: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot open the disk cache {path}: {source}")]
    Disk {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("invalid redis url: {0}")]
    Redis(#[from] redis_tier::RedisTierError),
}

/// A stored value: a format byte, then the postcard-encoded [`Response`],
/// lz4-compressed when large. The same bytes go to every tier.
struct Stored {
    bytes: Vec<u8>,
    expires: Instant,
}

const RAW: u8 = 0;
const LZ4: u8 = 1;

fn encode(response: &Response, compress_min: usize) -> Option<Vec<u8>> {
    let raw = postcard::to_allocvec(response).ok()?;
    Some(if raw.len() >= compress_min {
        let mut out = vec![LZ4];
        out.extend(lz4_flex::compress_prepend_size(&raw));
        out
    } else {
        let mut out = Vec::with_capacity(raw.len() + 1);
        out.push(RAW);
        out.extend(raw);
        out
    })
}

fn decode(bytes: &[u8]) -> Option<Response> {
    let (&format, body) = bytes.split_first()?;
    match format {
        RAW => postcard::from_bytes(body).ok(),
        LZ4 => postcard::from_bytes(&lz4_flex::decompress_size_prepended(body).ok()?).ok(),
        _ => None,
    }
}

#[derive(Default)]
struct TierCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    stores: AtomicU64,
}

impl TierCounters {
    fn stored(&self) {
        self.stores.fetch_add(1, Ordering::Relaxed);
    }
    fn hit(&self, tier: &'static str) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("brisk_cache_hits_total", "tier" => tier).increment(1);
    }
    fn miss(&self, tier: &'static str) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("brisk_cache_misses_total", "tier" => tier).increment(1);
    }
    fn error(&self, tier: &'static str, what: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("brisk_cache_errors_total", "tier" => tier).increment(1);
        tracing::warn!(tier, error = %what, "cache tier degraded; serving without it");
    }
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("hits".into(), self.hits.load(Ordering::Relaxed).into());
        m.insert("misses".into(), self.misses.load(Ordering::Relaxed).into());
        m.insert("errors".into(), self.errors.load(Ordering::Relaxed).into());
        m.insert("stores".into(), self.stores.load(Ordering::Relaxed).into());
        m
    }
}

pub struct ResultCache {
    settings: CacheSettings,
    memory: moka::future::Cache<Key, Arc<Stored>>,
    disk: Option<Arc<disk::DiskTier>>,
    redis: Option<Arc<redis_tier::RedisTier>>,
    inflight: Mutex<HashMap<Key, watch::Receiver<()>>>,
    mem: TierCounters,
    dsk: TierCounters,
    rds: Arc<TierCounters>,
    hits: AtomicU64,
    misses: AtomicU64,
    bypass: AtomicU64,
    coalesced: AtomicU64,
}

/// Removes the leader's in-flight mark however the leader ends (result,
/// error or cancellation); dropping the sender wakes the waiters.
struct Leader<'a> {
    cache: &'a ResultCache,
    key: Key,
    _done: watch::Sender<()>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.cache.inflight.lock().remove(&self.key);
    }
}

impl ResultCache {
    /// Opens the tiers. The disk tier must open (a configured path that
    /// cannot be used is a configuration error); Redis is only parsed here
    /// and connected on first use, so brisk starts while Redis is down.
    pub fn new(settings: CacheSettings) -> Result<Self, CacheError> {
        let memory = moka::future::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_k: &Key, v: &Arc<Stored>| {
                // Key, Arc and bookkeeping add roughly 100 bytes per entry.
                (v.bytes.len() + 100).min(u32::MAX as usize) as u32
            })
            // A backstop that frees memory; freshness itself is checked
            // against `Stored::expires` (tokio's clock, so tests can pause it).
            .time_to_live(settings.ttl)
            .build();
        let disk = match &settings.disk {
            Some(d) => Some(Arc::new(
                disk::DiskTier::open(&d.path, d.max_bytes).map_err(|source| CacheError::Disk {
                    path: d.path.clone(),
                    source,
                })?,
            )),
            None => None,
        };
        let redis = match &settings.redis {
            Some(r) => Some(Arc::new(redis_tier::RedisTier::new(
                &r.url,
                r.timeout,
                r.retry_after,
            )?)),
            None => None,
        };
        Ok(Self {
            settings,
            memory,
            disk,
            redis,
            inflight: Mutex::new(HashMap::new()),
            mem: TierCounters::default(),
            dsk: TierCounters::default(),
            rds: Arc::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypass: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        })
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Counts a request that did not use the cache.
    pub fn note_bypass(&self) {
        self.bypass.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("brisk_cache_bypass_total").increment(1);
    }

    /// Answers from the cache, or runs `compute` (once for all identical
    /// concurrent callers) and stores its result.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: Key,
        mode: CacheMode,
        compute: F,
    ) -> Result<(Response, CacheStatus), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Response, E>>,
    {
        match mode {
            CacheMode::Skip => {
                self.note_bypass();
                return compute().await.map(|r| (r, CacheStatus::Bypass));
            }
            CacheMode::Refresh => {
                self.note_bypass();
                let r = compute().await?;
                if storable(&r) {
                    self.store(key, &r).await;
                }
                return Ok((r, CacheStatus::Bypass));
            }
            CacheMode::Use => {}
        }
        let mut compute = Some(compute);
        loop {
            if let Some(r) = self.lookup(&key).await {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((r, CacheStatus::Hit));
            }
            let waiting = {
                let mut inflight = self.inflight.lock();
                match inflight.get(&key) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(());
                        inflight.insert(key, rx);
                        Ok(tx)
                    }
                }
            };
            match waiting {
                Err(mut rx) => {
                    // Someone is computing this very result: wait for the
                    // leader to finish (any way), then look again.
                    self.coalesced.fetch_add(1, Ordering::Relaxed);
                    let _ = rx.changed().await;
                }
                Ok(tx) => {
                    let _leader = Leader {
                        cache: self,
                        key,
                        _done: tx,
                    };
                    let f = compute.take().expect("a caller leads at most once");
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let r = f().await?;
                    if storable(&r) {
                        // Stored before `_leader` drops, so woken waiters
                        // find it in memory.
                        self.store(key, &r).await;
                    }
                    return Ok((r, CacheStatus::Miss));
                }
            }
        }
    }

    /// Looks through the tiers in order; a hit in a slower tier is copied
    /// into the faster ones.
    async fn lookup(&self, key: &Key) -> Option<Response> {
        if let Some(s) = self.memory.get(key).await {
            if Instant::now() < s.expires {
                if let Some(r) = decode(&s.bytes) {
                    self.mem.hit("memory");
                    return Some(r);
                }
                self.mem.error("memory", &"undecodable entry");
            }
            self.memory.invalidate(key).await;
        }
        self.mem.miss("memory");
        if let Some(d) = &self.disk {
            let (d, k) = (d.clone(), *key);
            match tokio::task::spawn_blocking(move || d.get(&k)).await {
                Ok(Ok(Some((bytes, ttl_ms)))) => {
                    if let Some(r) = decode(&bytes) {
                        self.dsk.hit("disk");
                        let ttl = Duration::from_millis(ttl_ms).min(self.settings.ttl);
                        self.put_memory(*key, bytes, ttl).await;
                        return Some(r);
                    }
                    self.dsk.error("disk", &"undecodable entry");
                }
                Ok(Ok(None)) => self.dsk.miss("disk"),
                Ok(Err(e)) => self.dsk.error("disk", &e),
                Err(e) => self.dsk.error("disk", &e),
            }
        }
        if let Some(redis) = &self.redis {
            match redis.get(key).await {
                Ok(Some((bytes, ttl))) => {
                    if let Some(r) = decode(&bytes) {
                        self.rds.hit("redis");
                        let ttl = ttl.min(self.settings.ttl);
                        self.put_disk(*key, bytes.clone(), ttl).await;
                        self.put_memory(*key, bytes, ttl).await;
                        return Some(r);
                    }
                    self.rds.error("redis", &"undecodable entry");
                }
                Ok(None) => self.rds.miss("redis"),
                Err(e) => self.rds.error("redis", &e),
            }
        }
        None
    }

    async fn put_memory(&self, key: Key, bytes: Vec<u8>, ttl: Duration) {
        let stored = Stored {
            bytes,
            expires: Instant::now() + ttl,
        };
        self.memory.insert(key, Arc::new(stored)).await;
    }

    async fn put_disk(&self, key: Key, bytes: Vec<u8>, ttl: Duration) {
        if let Some(d) = &self.disk {
            let d = d.clone();
            let ttl_ms = ttl.as_millis().min(u64::MAX as u128) as u64;
            match tokio::task::spawn_blocking(move || d.put(&key, &bytes, ttl_ms)).await {
                Ok(Ok(())) => self.dsk.stored(),
                Ok(Err(e)) => self.dsk.error("disk", &e),
                Err(e) => self.dsk.error("disk", &e),
            }
        }
    }

    /// Writes a fresh result to every tier. Memory and disk are written
    /// before returning (cheap, and a waiter must find the entry); Redis in
    /// the background, so a slow Redis never delays the response.
    async fn store(&self, key: Key, response: &Response) {
        let Some(bytes) = encode(response, self.settings.compress_min_bytes) else {
            return;
        };
        let ttl = self.settings.ttl;
        if let Some(redis) = &self.redis {
            if !redis.is_down() {
                let (redis, bytes, counters) = (redis.clone(), bytes.clone(), self.rds.clone());
                tokio::spawn(async move {
                    match redis.put(&key, &bytes, ttl).await {
                        Ok(()) => counters.stored(),
                        Err(e) => counters.error("redis", &e),
                    }
                });
            }
        }
        self.put_disk(key, bytes.clone(), ttl).await;
        self.put_memory(key, bytes, ttl).await;
        self.publish_sizes().await;
    }

    async fn publish_sizes(&self) {
        metrics::gauge!("brisk_cache_bytes", "tier" => "memory")
            .set(self.memory.weighted_size() as f64);
        metrics::gauge!("brisk_cache_entries", "tier" => "memory")
            .set(self.memory.entry_count() as f64);
        if let Some(d) = &self.disk {
            metrics::gauge!("brisk_cache_bytes", "tier" => "disk").set(d.bytes() as f64);
            metrics::gauge!("brisk_cache_entries", "tier" => "disk").set(d.entries() as f64);
        }
    }

    /// Empties every tier (Redis: only brisk's keys). Returns what failed.
    pub async fn clear(&self) -> Vec<String> {
        let mut errors = Vec::new();
        self.memory.invalidate_all();
        self.memory.run_pending_tasks().await;
        if let Some(d) = &self.disk {
            let d = d.clone();
            match tokio::task::spawn_blocking(move || d.clear()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("disk: {e}")),
                Err(e) => errors.push(format!("disk: {e}")),
            }
        }
        if let Some(r) = &self.redis {
            if let Err(e) = r.clear().await {
                errors.push(format!("redis: {e}"));
            }
        }
        self.publish_sizes().await;
        errors
    }

    /// Memory tier size in bytes after pending evictions have run.
    pub async fn memory_bytes(&self) -> u64 {
        self.memory.run_pending_tasks().await;
        self.memory.weighted_size()
    }

    /// Counters and sizes for `GET /v1/cache/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        self.memory.run_pending_tasks().await;
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let mut tiers = serde_json::Map::new();
        let mut m = self.mem.json();
        m.insert("entries".into(), self.memory.entry_count().into());
        m.insert("bytes".into(), self.memory.weighted_size().into());
        m.insert("max_bytes".into(), self.settings.max_bytes.into());
        tiers.insert("memory".into(), m.into());
        if let Some(d) = &self.disk {
            let mut m = self.dsk.json();
            m.insert("entries".into(), d.entries().into());
            m.insert("bytes".into(), d.bytes().into());
            m.insert("max_bytes".into(), d.max_bytes().into());
            if let Some(s) = &self.settings.disk {
                m.insert("path".into(), s.path.display().to_string().into());
            }
            tiers.insert("disk".into(), m.into());
        }
        if let Some(r) = &self.redis {
            let mut m = self.rds.json();
            m.insert("url".into(), r.display_url().into());
            m.insert("up".into(), (!r.is_down()).into());
            tiers.insert("redis".into(), m.into());
        }
        let lookups = hits + misses;
        serde_json::json!({
            "enabled": true,
            "hits": hits,
            "misses": misses,
            "bypass": self.bypass.load(Ordering::Relaxed),
            "coalesced": self.coalesced.load(Ordering::Relaxed),
            "hit_ratio": if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
            "ttl_s": self.settings.ttl.as_secs(),
            "tiers": tiers,
        })
    }
}
