//! The job store: one SQLite file (WAL) behind a small connection pool,
//! exactly-once claiming, crash recovery, result expiry, and the worker loop
//! that runs a claimed job through the in-process router.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;
use tracing::Instrument;

use crate::config::JobsConfig;
use crate::error::AppError;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("jobs database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("jobs database task failed: {0}")]
    Join(String),
}

impl From<JobsError> for AppError {
    fn from(e: JobsError) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A small pool of SQLite connections. WAL lets readers (status polls) run
/// beside the one writer; writers queue on SQLite's lock with the busy
/// timeout, and the few errors the timeout does not absorb (a read
/// transaction upgraded to write after another commit) are retried here
/// with backoff.
struct Pool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Pool {
    fn open(path: &Path, size: usize, busy_timeout: Duration) -> rusqlite::Result<Self> {
        let pool = Self {
            path: path.to_path_buf(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        };
        let conn = pool.connect()?;
        conn.execute_batch(SCHEMA)?;
        pool.idle.lock().push(conn);
        Ok(pool)
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        // WAL + NORMAL: a committed job survives a process kill (the WAL is
        // in the OS's hands); only an OS crash may lose the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(self.busy_timeout)?;
        Ok(conn)
    }

    /// Runs `f` on a pooled connection off the async threads.
    async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, JobsError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| JobsError::Join(e.to_string()))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().pop() {
                Some(c) => c,
                None => pool.connect()?,
            };
            let mut delay = Duration::from_millis(5);
            let mut tries = 0;
            let out = loop {
                match f(&conn) {
                    Err(e) if is_busy(&e) && tries < 8 => {
                        tries += 1;
                        metrics::counter!("brisk_jobs_db_retries_total").increment(1);
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_millis(500));
                    }
                    other => break other,
                }
            };
            pool.idle.lock().push(conn);
            out.map_err(JobsError::Db)
        })
        .await
        .map_err(|e| JobsError::Join(e.to_string()))?
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    run_after_ms INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER,
    finished_ms INTEGER,
    expires_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    result_status INTEGER,
    result_content_type TEXT,
    result BLOB,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_expires ON jobs(expires_ms);
";

/// A claimed job: what the worker sends through the router.
struct Claimed {
    id: String,
    endpoint: String,
    content_type: String,
    body: Vec<u8>,
    attempts: u32,
}

/// The job store and the handles of running jobs.
pub struct Jobs {
    pool: Arc<Pool>,
    config: JobsConfig,
    /// Wakes idle workers when a job is queued.
    wake: Notify,
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Fraction done of running jobs whose endpoint reports it (topics,
    /// audio analysis), kept in memory only: after a crash a requeued job
    /// starts over anyway.
    progress: Mutex<HashMap<String, f64>>,
    ids: (RandomState, AtomicU64),
}

/// How a finished run is recorded.
enum Outcome {
    Done {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// Overload (429/503): tried again later while attempts remain.
    Retry { status: u16, body: Vec<u8> },
}

impl Jobs {
    /// Opens (or creates) the database and recovers jobs a previous process
    /// left running.
    pub fn open(config: &JobsConfig) -> Result<Self, JobsError> {
        if let Some(dir) = config
            .db_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let pool = Pool::open(
            &config.db_path,
            config.pool_size,
            Duration::from_millis(config.busy_timeout_ms),
        )?;
        let jobs = Self {
            pool: Arc::new(pool),
            config: config.clone(),
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            ids: (RandomState::new(), AtomicU64::new(0)),
        };
        jobs.recover_blocking()?;
        Ok(jobs)
    }

    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// Jobs left `running` belong to a process that died mid-run: requeue
    /// them, or fail those that have used all their attempts.
    fn recover_blocking(&self) -> Result<(), JobsError> {
        let conn = self.pool.connect()?;
        let now = now_ms();
        let failed = conn.execute(
            "UPDATE jobs SET status = 'failed', finished_ms = ?1, expires_ms = ?2,
                 error = 'interrupted by a server restart ' || attempts || ' time(s); no attempts left'
             WHERE status = 'running' AND attempts >= ?3",
            params![now, now + self.ttl_ms(), self.config.max_attempts],
        )?;
        let requeued = conn.execute(
            "UPDATE jobs SET status = 'queued', started_ms = NULL, run_after_ms = 0
             WHERE status = 'running'",
            [],
        )?;
        let queued: i64 = conn.query_row(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?;
        tracing::info!(requeued, failed, queued, "jobs recovered");
        Ok(())
    }

    fn ttl_ms(&self) -> i64 {
        (self.config.result_ttl_s as i64).saturating_mul(1000)
    }

    fn new_id(&self) -> String {
        let n = self.ids.1.fetch_add(1, Ordering::Relaxed);
        let mut a = self.ids.0.build_hasher();
        a.write_u64(n);
        a.write_i64(now_ms());
        let mut b = self.ids.0.build_hasher();
        b.write_u64(a.finish());
        b.write_u64(n);
        format!("job_{:016x}{:016x}", a.finish(), b.finish())
    }

    /// Stores a job; it runs when a worker is free.
    pub async fn submit(
        &self,
        endpoint: String,
        content_type: String,
        body: Vec<u8>,
    ) -> Result<Value, JobsError> {
        let id = self.new_id();
        let now = now_ms();
        let row_id = id.clone();
        let body = Arc::new(body);
        self.pool
            .run(move |c| {
                c.execute(
                    "INSERT INTO jobs (id, status, endpoint, content_type, body, created_ms)
                     VALUES (?1, 'queued', ?2, ?3, ?4, ?5)",
                    params![row_id, endpoint, content_type, body.as_slice(), now],
                )
            })
            .await?;
        metrics::counter!("brisk_jobs_submitted_total").increment(1);
        self.wake.notify_one();
        Ok(self.get(&id).await?.unwrap_or(Value::Null))
    }

    /// The job's status and, once finished, its result; `None` when unknown
    /// or expired.
    pub async fn get(&self, id: &str) -> Result<Option<Value>, JobsError> {
        let fraction = self.progress.lock().get(id).copied();
        let job = self.get_row(id).await?;
        Ok(job.map(|mut v| {
            if let (Some(f), Some("running")) = (fraction, v["status"].as_str()) {
                v["progress"] = json!(f);
            }
            v
        }))
    }

    /// Records the fraction done (0..=1) of a running job; called by the
    /// endpoint the job runs, which knows the job by its `x-brisk-job`
    /// header. Ignored for a job that is not running.
    pub fn report_progress(&self, id: &str, fraction: f64) {
        if self.running.lock().contains_key(id) {
            self.progress
                .lock()
                .insert(id.to_string(), fraction.clamp(0.0, 1.0));
        }
    }

    async fn get_row(&self, id: &str) -> Result<Option<Value>, JobsError> {
        let id = id.to_string();
        let now = now_ms();
        self.pool
            .run(move |c| {
                c.query_row(
                    "SELECT id, status, endpoint, created_ms, started_ms, finished_ms,
                            expires_ms, attempts, runs, result_status, result_content_type,
                            result, error
                     FROM jobs WHERE id = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
                    params![id, now],
                    row_json,
                )
                .optional()
            })
            .await
    }

    /// Cancels a queued or running job. `None` when unknown; otherwise the
    /// job as it now is (a finished job is left as it was).
    pub async fn cancel(&self, id: &str) -> Result<Option<Value>, JobsError> {
        let key = id.to_string();
        let now = now_ms();
        let expires = now + self.ttl_ms();
        let changed = self
            .pool
            .run(move |c| {
                c.execute(
                    "UPDATE jobs SET status = 'cancelled', finished_ms = ?2, expires_ms = ?3,
                         error = 'cancelled by the client'
                     WHERE id = ?1 AND status IN ('queued', 'running')",
                    params![key, now, expires],
                )
            })
            .await?;
        if changed > 0 {
            // Dropping the request future drops its inference request,
            // which the registry then skips or stops.
            if let Some(h) = self.running.lock().remove(id) {
                h.abort();
            }
            metrics::counter!("brisk_jobs_finished_total", "status" => "cancelled").increment(1);
        }
        self.get(id).await
    }

    /// Takes the oldest runnable job, or `None`. One statement, so two
    /// workers can never take the same job.
    async fn claim(&self) -> Result<Option<Claimed>, JobsError> {
        let now = now_ms();
        self.pool
            .run(move |c| {
                c.query_row(
                    "UPDATE jobs SET status = 'running', started_ms = ?1,
                         attempts = attempts + 1, runs = runs + 1
                     WHERE id = (SELECT id FROM jobs WHERE status = 'queued'
                                     AND run_after_ms <= ?1 ORDER BY seq LIMIT 1)
                       AND status = 'queued'
                     RETURNING id, endpoint, content_type, body, attempts",
                    params![now],
                    |r| {
                        Ok(Claimed {
                            id: r.get(0)?,
                            endpoint: r.get(1)?,
                            content_type: r.get(2)?,
                            body: r.get(3)?,
                            attempts: r.get(4)?,
                        })
                    },
                )
                .optional()
            })
            .await
    }

    /// Records a run's outcome unless the job was cancelled meanwhile.
    async fn finish(&self, job: &Claimed, outcome: Outcome) -> Result<(), JobsError> {
        let now = now_ms();
        let expires = now + self.ttl_ms();
        let id = job.id.clone();
        let (reply, label) = match outcome {
            Outcome::Retry { status, body } if job.attempts < self.config.max_attempts => {
                // Exponential backoff: the server was overloaded.
                let after = now + 500 * (1i64 << job.attempts.min(6));
                let error = String::from_utf8_lossy(&body).into_owned();
                self.pool
                    .run(move |c| {
                        c.execute(
                            "UPDATE jobs SET status = 'queued', run_after_ms = ?2,
                                 started_ms = NULL, result_status = ?3, error = ?4
                             WHERE id = ?1 AND status = 'running'",
                            params![id, after, status, error],
                        )
                    })
                    .await?;
                return Ok(());
            }
            // Out of attempts: the overload answer is the job's failure.
            Outcome::Retry { status, body } => {
                ((status, "application/json".to_string(), body), "failed")
            }
            Outcome::Done {
                status,
                content_type,
                body,
            } => {
                let label = if (200..300).contains(&status) {
                    "succeeded"
                } else {
                    "failed"
                };
                ((status, content_type, body), label)
            }
        };
        let (code, content_type, body) = reply;
        let error = (label == "failed").then(|| String::from_utf8_lossy(&body).into_owned());
        let done = self
            .pool
            .run(move |c| {
                c.execute(
                    "UPDATE jobs SET status = ?2, finished_ms = ?3, expires_ms = ?4,
                         result_status = ?5, result_content_type = ?6, result = ?7, error = ?8
                     WHERE id = ?1 AND status = 'running'",
                    params![id, label, now, expires, code, content_type, body, error],
                )
            })
            .await?;
        if done > 0 {
            metrics::counter!("brisk_jobs_finished_total", "status" => label).increment(1);
        }
        Ok(())
    }

    /// Deletes finished jobs whose results have expired.
    pub async fn purge(&self) -> Result<usize, JobsError> {
        let now = now_ms();
        let n = self
            .pool
            .run(move |c| {
                c.execute(
                    "DELETE FROM jobs WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
                    params![now],
                )
            })
            .await?;
        if n > 0 {
            metrics::counter!("brisk_jobs_purged_total").increment(n as u64);
        }
        Ok(n)
    }

    /// How many jobs are in each status (for tests and operators).
    pub async fn counts(&self) -> Result<HashMap<String, i64>, JobsError> {
        self.pool
            .run(|c| {
                let mut st = c.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await
    }

    /// Runs of each job so far (exactly-once checks).
    pub async fn runs(&self) -> Result<Vec<(String, i64)>, JobsError> {
        self.pool
            .run(|c| {
                let mut st = c.prepare("SELECT id, runs FROM jobs ORDER BY seq")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await
    }

    /// One worker's loop: claim, run through the router, record.
    pub(super) async fn work(self: Arc<Self>, router: Router) {
        loop {
            let job = match self.claim().await {
                Ok(Some(job)) => job,
                Ok(None) => {
                    // Wake on a submit, or poll now and then for jobs whose
                    // backoff has passed.
                    let _ = tokio::time::timeout(Duration::from_millis(250), self.wake.notified())
                        .await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a job failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            // Another job may be waiting: let a sibling worker look.
            self.wake.notify_one();
            let span = tracing::info_span!("job", id = %job.id, endpoint = %job.endpoint,
                attempt = job.attempts);
            let outcome = self.run_one(&job, router.clone()).instrument(span).await;
            let Some(outcome) = outcome else {
                self.progress.lock().remove(&job.id);
                continue; // cancelled: the row already says so
            };
            if let Err(e) = self.finish(&job, outcome).await {
                // The row stays `running`; the next start-up requeues it.
                tracing::warn!(id = %job.id, error = %e, "recording a job result failed");
            }
            // Only now: until the row says `succeeded`, readers see the last
            // fraction rather than falling back to 0.
            self.progress.lock().remove(&job.id);
        }
    }

    async fn run_one(&self, job: &Claimed, router: Router) -> Option<Outcome> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(&job.endpoint)
            .header(header::CONTENT_TYPE, &job.content_type)
            .header("x-brisk-job", &job.id)
            .body(Body::from(job.body.clone()));
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                return Some(Outcome::Done {
                    status: 400,
                    content_type: "application/json".into(),
                    body: AppError::bad(format!("invalid job request: {e}"), "endpoint")
                        .error_object()
                        .to_string()
                        .into_bytes(),
                })
            }
        };
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let resp = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_string();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            (status, content_type, body)
        });
        self.running
            .lock()
            .insert(job.id.clone(), task.abort_handle());
        let result = task.await;
        self.running.lock().remove(&job.id);
        metrics::histogram!("brisk_job_run_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok((status, content_type, body)) => Some(if status == 429 || status == 503 {
                Outcome::Retry { status, body }
            } else {
                Outcome::Done {
                    status,
                    content_type,
                    body,
                }
            }),
            Err(e) if e.is_cancelled() => None,
            Err(e) => Some(Outcome::Done {
                status: 500,
                content_type: "text/plain".into(),
                body: format!("job task failed: {e}").into_bytes(),
            }),
        }
    }
}

fn row_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let status: String = r.get(1)?;
    let result_status: Option<i64> = r.get(9)?;
    let content_type: Option<String> = r.get(10)?;
    let result: Option<Vec<u8>> = r.get(11)?;
    let error: Option<String> = r.get(12)?;
    let decode = |bytes: &[u8]| -> Value {
        let json = content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"));
        match json
            .then(|| serde_json::from_slice::<Value>(bytes).ok())
            .flatten()
        {
            Some(v) => v,
            None => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        }
    };
    let (result, error) = match status.as_str() {
        "succeeded" => (result.as_deref().map(decode), None),
        _ => {
            // A failed request's body is already an OpenAI error object.
            let err = error.map(|e| match serde_json::from_str::<Value>(&e) {
                Ok(v) => v.get("error").cloned().unwrap_or(v),
                Err(_) => json!({ "message": e }),
            });
            (None, err)
        }
    };
    let progress = match status.as_str() {
        "succeeded" => 1.0,
        _ => 0.0,
    };
    let secs = |ms: Option<i64>| ms.map(|m| m as f64 / 1000.0);
    Ok(json!({
        "id": r.get::<_, String>(0)?,
        "object": "job",
        "status": status,
        "endpoint": r.get::<_, String>(2)?,
        "created_at": secs(Some(r.get(3)?)),
        "started_at": secs(r.get(4)?),
        "finished_at": secs(r.get(5)?),
        "expires_at": secs(r.get(6)?),
        "attempts": r.get::<_, i64>(7)?,
        "runs": r.get::<_, i64>(8)?,
        "progress": progress,
        "result_status": result_status,
        "result": result,
        "error": error,
    }))
}
