//! Prints the analysis of audio files as JSON, one line per file, with the
//! time each took on stderr: `cargo run --release -p brisk-audio --example
//! analyze -- FILE... [--features tempo,key]`.

use std::time::Instant;

use brisk_audio::{analyze_file, AnalyzeOptions, FeatureSet};

fn main() {
    let mut opts = AnalyzeOptions::default();
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--features" {
            let list = args.next().unwrap_or_default();
            opts.features = FeatureSet::parse(&list).unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(2)
            });
        } else {
            files.push(a);
        }
    }
    let mut failed = false;
    for f in files {
        let t = Instant::now();
        match analyze_file(std::path::Path::new(&f), &opts, &mut |_| {}) {
            Ok(a) => {
                let json = serde_json::to_string(&a).unwrap_or_default();
                println!("{{\"file\":{:?},\"analysis\":{json}}}", f);
                eprintln!("{f}: {:.3} s", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                eprintln!("{f}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
