//! `brisk models`: what the config (or the models folder) would serve,
//! with each model's task, backend, size on disk and problems, found
//! without loading any weights or starting a server.

use std::path::Path;

use brisk_core::Loader;
use serde::Serialize;

use crate::serve::{load_config, ServeOptions};

#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub task: Option<String>,
    pub backend: String,
    pub path: String,
    pub bytes: u64,
    /// What would stop the model from loading, as far as can be told
    /// without loading it; empty when none is known.
    pub problems: Vec<String>,
}

/// The models `opts` would serve, by name.
pub fn list(opts: &ServeOptions) -> anyhow::Result<Vec<Row>> {
    let config = load_config(opts)?;
    let loader = brisk_backends::BriskLoader::new();
    let mut rows = Vec::new();
    for spec in config.model_specs()? {
        let mut problems = Vec::new();
        let src = &spec.source;
        if src.backend != "sim" && !src.path.exists() {
            problems.push(format!("{} does not exist", src.path.display()));
        }
        let task = match loader.task(src) {
            Ok(t) => Some(t.to_string()),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        rows.push(Row {
            name: spec.name,
            task,
            backend: src.backend.clone(),
            path: src.path.display().to_string(),
            bytes: size_on_disk(&src.path),
            problems,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// Bytes of the files under `path` (symlinks followed: fetched models are
/// often links into a shared store).
fn size_on_disk(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| size_on_disk(&e.path()))
                .sum::<u64>()
        })
        .unwrap_or(0)
}

/// The rows as an aligned table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<32} {:<14} {:<14} {:>10}  {}\n",
        "NAME", "TASK", "BACKEND", "SIZE", "PROBLEMS"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} {:<14} {:<14} {:>10}  {}\n",
            r.name,
            r.task.as_deref().unwrap_or("?"),
            r.backend,
            human(r.bytes),
            if r.problems.is_empty() {
                "-".to_string()
            } else {
                r.problems.join("; ")
            }
        ));
    }
    out
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn lists_configured_models_with_their_problems() {
        let dir = std::env::temp_dir().join(format!("brisk-models-cli-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("here")).expect("mkdir");
        std::fs::write(dir.join("here/w.bin"), vec![0u8; 2048]).expect("write");
        let config = dir.join("brisk.toml");
        std::fs::write(
            &config,
            "[server]\ndiscover = false\n\
             [models.here]\nbackend = \"ct2-whisper\"\nsource = \"here\"\n\
             [models.gone]\nbackend = \"ct2-whisper\"\nsource = \"gone\"\n",
        )
        .expect("config");
        let rows = list(&ServeOptions {
            config: Some(config),
            models_dir: Some(dir.clone()),
            ..Default::default()
        })
        .expect("list");
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["gone", "here"]);
        assert_eq!(rows[1].bytes, 2048);
        assert!(rows[0].problems[0].contains("does not exist"), "{rows:?}");
        assert!(table(&rows).contains("2.0 KiB"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
