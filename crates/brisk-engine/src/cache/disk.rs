//! Tier 2: a persistent cache in one SQLite file (WAL), bounded in bytes.
//!
//! Blocking by nature: every method is called from `spawn_blocking`. One
//! connection behind a mutex is enough: entries are small and the tier sits
//! behind the in-memory tier, so it only sees memory misses and stores.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::key::Key;

pub struct DiskTier {
    conn: Mutex<Connection>,
    max_bytes: u64,
    bytes: AtomicU64,
    entries: AtomicU64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl DiskTier {
    pub fn open(path: &Path, max_bytes: u64) -> rusqlite::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        // WAL: readers never block the writer; NORMAL sync is durable across
        // process crashes (only an OS crash may lose the last commits, which
        // for a cache only costs recomputation).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                 key BLOB PRIMARY KEY,
                 value BLOB NOT NULL,
                 expires_ms INTEGER NOT NULL,
                 accessed_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS entries_accessed ON entries(accessed_ms);",
        )?;
        conn.execute(
            "DELETE FROM entries WHERE expires_ms <= ?1",
            params![now_ms() as i64],
        )?;
        let (bytes, entries): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(LENGTH(value)), 0), COUNT(*) FROM entries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let tier = Self {
            conn: Mutex::new(conn),
            max_bytes,
            bytes: AtomicU64::new(bytes as u64),
            entries: AtomicU64::new(entries as u64),
        };
        // A smaller budget than last run's contents takes effect at once.
        tier.evict()?;
        Ok(tier)
    }

    /// The stored value and its remaining time to live.
    pub fn get(&self, key: &Key) -> rusqlite::Result<Option<(Vec<u8>, u64)>> {
        let now = now_ms();
        let conn = self.conn.lock();
        let row: Option<(Vec<u8>, i64)> = conn
            .query_row(
                "SELECT value, expires_ms FROM entries WHERE key = ?1",
                params![key.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((value, expires)) = row else {
            return Ok(None);
        };
        if expires as u64 <= now {
            let n = conn.execute(
                "DELETE FROM entries WHERE key = ?1",
                params![key.as_slice()],
            )?;
            if n > 0 {
                self.bytes.fetch_sub(value.len() as u64, Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
            }
            return Ok(None);
        }
        // Recency for eviction. Costs a write per hit, but only for
        // entries the memory tier has already dropped.
        conn.execute(
            "UPDATE entries SET accessed_ms = ?2 WHERE key = ?1",
            params![key.as_slice(), now as i64],
        )?;
        Ok(Some((value, expires as u64 - now)))
    }

    pub fn put(&self, key: &Key, value: &[u8], ttl_ms: u64) -> rusqlite::Result<()> {
        if value.len() as u64 > self.max_bytes {
            return Ok(());
        }
        let now = now_ms();
        {
            let conn = self.conn.lock();
            let old: Option<i64> = conn
                .query_row(
                    "SELECT LENGTH(value) FROM entries WHERE key = ?1",
                    params![key.as_slice()],
                    |r| r.get(0),
                )
                .optional()?;
            conn.execute(
                "INSERT OR REPLACE INTO entries (key, value, expires_ms, accessed_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    key.as_slice(),
                    value,
                    now.saturating_add(ttl_ms) as i64,
                    now as i64
                ],
            )?;
            match old {
                Some(len) => {
                    self.bytes.fetch_sub(len as u64, Ordering::Relaxed);
                }
                None => {
                    self.entries.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.bytes.fetch_add(value.len() as u64, Ordering::Relaxed);
        }
        self.evict()
    }

    /// Drops least recently used entries until the tier fits its budget.
    fn evict(&self) -> rusqlite::Result<()> {
        while self.bytes.load(Ordering::Relaxed) > self.max_bytes {
            let conn = self.conn.lock();
            let victims: Vec<(Vec<u8>, i64)> = conn
                .prepare(
                    "SELECT key, LENGTH(value) FROM entries ORDER BY accessed_ms ASC LIMIT 32",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            if victims.is_empty() {
                self.bytes.store(0, Ordering::Relaxed);
                self.entries.store(0, Ordering::Relaxed);
                break;
            }
            for (key, len) in victims {
                if self.bytes.load(Ordering::Relaxed) <= self.max_bytes {
                    break;
                }
                conn.execute("DELETE FROM entries WHERE key = ?1", params![key])?;
                self.bytes.fetch_sub(len as u64, Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    pub fn clear(&self) -> rusqlite::Result<()> {
        let conn = self.conn.lock();
        conn.execute("DELETE FROM entries", [])?;
        self.bytes.store(0, Ordering::Relaxed);
        self.entries.store(0, Ordering::Relaxed);
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("brisk-disk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("cache.sqlite")
    }

    #[test]
    fn entries_survive_reopen() {
        let path = tmp("reopen");
        {
            let t = DiskTier::open(&path, 1 << 20).expect("open");
            t.put(&[1; 32], b"hello", 60_000).expect("put");
        }
        let t = DiskTier::open(&path, 1 << 20).expect("reopen");
        let (v, ttl) = t.get(&[1; 32]).expect("get").expect("present after reopen");
        assert_eq!(v, b"hello");
        assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
        assert_eq!(t.entries(), 1);
        assert_eq!(t.bytes(), 5);
        drop(t);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn budget_evicts_least_recently_used() {
        let path = tmp("budget");
        let t = DiskTier::open(&path, 1000).expect("open");
        for i in 0..5u8 {
            t.put(&[i; 32], &[i; 300], 60_000).expect("put");
            // Distinct access times so the LRU order is well defined.
            std::thread::sleep(std::time::Duration::from_millis(3));
            if i == 1 {
                // Touch entry 0: entry 1 is now the oldest.
                t.get(&[0; 32]).expect("get");
            }
        }
        assert!(t.bytes() <= 1000, "{}", t.bytes());
        assert_eq!(t.entries(), 3);
        assert!(t.get(&[1; 32]).expect("get").is_none(), "LRU entry evicted");
        assert!(t.get(&[4; 32]).expect("get").is_some(), "newest kept");
        drop(t);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn expired_entries_are_gone() {
        let path = tmp("ttl");
        let t = DiskTier::open(&path, 1 << 20).expect("open");
        t.put(&[7; 32], b"x", 1).expect("put");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(t.get(&[7; 32]).expect("get").is_none());
        assert_eq!(t.entries(), 0);
        drop(t);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}
