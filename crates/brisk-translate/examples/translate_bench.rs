//! Translates the lines of a file with one model folder and reports the time.
//!
//! `translate_bench <model-dir> <lines.txt> [--threads N] [--rounds R]
//!  [--batch B] [--print]`
//!
//! Each round translates all lines in batches of B (default: all at once);
//! prints one JSON line per round (`{"round":..,"seconds":..,"sentences":..}`),
//! and with --print the translations of the first round (one per line).
//! scripts/bench_translation.py drives it.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: translate_bench <model-dir> <lines.txt> [options]")?,
    );
    let file = PathBuf::from(args.next().ok_or("missing lines file")?);
    let (mut threads, mut rounds, mut batch, mut print) = (2usize, 1usize, 0usize, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().ok_or("--threads N")?.parse()?,
            "--rounds" => rounds = args.next().ok_or("--rounds R")?.parse()?,
            "--batch" => batch = args.next().ok_or("--batch B")?.parse()?,
            "--print" => print = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let text = std::fs::read_to_string(&file)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let t0 = Instant::now();
    let tr = brisk_translate::Translator::load(&dir, threads)?;
    eprintln!(
        "loaded {:?} in {:.3}s",
        tr.languages(),
        t0.elapsed().as_secs_f64()
    );
    let batch = if batch == 0 {
        lines.len().max(1)
    } else {
        batch
    };
    for round in 0..rounds {
        let t = Instant::now();
        let mut outs = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(batch) {
            outs.extend(tr.translate_batch(chunk)?);
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"round\":{round},\"seconds\":{secs:.6},\"sentences\":{}}}",
            lines.len()
        );
        if print && round == 0 {
            for o in &outs {
                println!("{o}");
            }
        }
    }
    Ok(())
}
