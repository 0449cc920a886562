//! Tier 3: Redis, shared by several brisk instances.
//!
//! Redis is an optimisation, never a dependency: every call is bounded by a
//! short timeout, and after a failure the tier is considered down for a
//! while, so requests do not each pay the timeout while Redis is away. The
//! next call after that pause reconnects.

use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use super::key::Key;

/// Every key brisk writes starts with this, so `clear` can find them all
/// without touching other data in a shared Redis.
pub const PREFIX: &str = "brisk:cache:";

#[derive(Debug, thiserror::Error)]
pub enum RedisTierError {
    #[error("redis is marked down after an earlier failure")]
    Down,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub struct RedisTier {
    client: redis::Client,
    url: String,
    timeout: Duration,
    retry_after: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Serialises reconnects, so a burst of requests opens one connection.
    connecting: tokio::sync::Mutex<()>,
    down_until: Mutex<Option<Instant>>,
}

fn redis_key(key: &Key) -> String {
    let mut s = String::with_capacity(PREFIX.len() + 64);
    s.push_str(PREFIX);
    for b in key {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl RedisTier {
    /// Only parses the URL: connecting happens on first use, so brisk starts
    /// (and serves) while Redis is down.
    pub fn new(
        url: &str,
        timeout: Duration,
        retry_after: Duration,
    ) -> Result<Self, RedisTierError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            url: url.to_string(),
            timeout,
            retry_after,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            down_until: Mutex::new(None),
        })
    }

    /// The URL without credentials, for stats and logs.
    pub fn display_url(&self) -> String {
        match self.url.rsplit_once('@') {
            Some((scheme_user, host)) => {
                let scheme = scheme_user.split("://").next().unwrap_or("redis");
                format!("{scheme}://***@{host}")
            }
            None => self.url.clone(),
        }
    }

    pub fn is_down(&self) -> bool {
        self.down_until.lock().is_some_and(|t| Instant::now() < t)
    }

    fn mark_down(&self) {
        *self.conn.lock() = None;
        *self.down_until.lock() = Some(Instant::now() + self.retry_after);
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisTierError> {
        if self.is_down() {
            return Err(RedisTierError::Down);
        }
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        let c = match tokio::time::timeout(
            self.timeout,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.mark_down();
                return Err(e.into());
            }
            Err(_) => {
                self.mark_down();
                return Err(RedisTierError::Timeout(self.timeout));
            }
        };
        *self.conn.lock() = Some(c.clone());
        *self.down_until.lock() = None;
        Ok(c)
    }

    /// Runs one exchange with Redis within the timeout; any failure marks
    /// the tier down.
    async fn run<T, F, Fut>(&self, exchange: F) -> Result<T, RedisTierError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let c = self.connection().await?;
        match tokio::time::timeout(self.timeout, exchange(c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.mark_down();
                Err(e.into())
            }
            Err(_) => {
                self.mark_down();
                Err(RedisTierError::Timeout(self.timeout))
            }
        }
    }

    /// The value and its remaining time to live.
    pub async fn get(&self, key: &Key) -> Result<Option<(Vec<u8>, Duration)>, RedisTierError> {
        let k = redis_key(key);
        let (value, pttl): (Option<Vec<u8>>, i64) = self
            .run(|mut c| async move { redis::pipe().get(&k).pttl(&k).query_async(&mut c).await })
            .await?;
        Ok(value.map(|v| {
            // -1: no expiry (set by someone else); treat as a fresh TTL.
            let ttl = if pttl > 0 {
                Duration::from_millis(pttl as u64)
            } else {
                Duration::MAX
            };
            (v, ttl)
        }))
    }

    pub async fn put(&self, key: &Key, value: &[u8], ttl: Duration) -> Result<(), RedisTierError> {
        let k = redis_key(key);
        let ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(&k)
                .arg(value)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Deletes every brisk cache key (SCAN, not KEYS: never blocks Redis).
    pub async fn clear(&self) -> Result<u64, RedisTierError> {
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{PREFIX}*"))
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .run(|mut c| async move {
                        redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await
                    })
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}
