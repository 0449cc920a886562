//! Translates the lines of a file with one model folder and reports the time.
//!
//! `translate_bench <model-dir> <lines.txt> [--threads N] [--rounds R]
//!  [--batch B] [--print]`
//!
//! Each round translates all lines in batches of B (default: all at once);
//! prints one JSON line per round (`{"round":..,"seconds":..,"cpu_seconds":..,
//! "sentences":..}`; CPU time of all the process's threads, from
//! /proc/self/stat, the steadier figure on a loaded machine),
//! and with --print the translations of the first round (one per line).
//! scripts/bench_translation.py drives it.

use std::path::PathBuf;

/// User + system CPU seconds of this process (all threads), from
/// /proc/self/stat (fields 14 and 15, in USER_HZ = 100 ticks per second on
/// Linux); None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: fields count from after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
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
        let c0 = cpu_seconds();
        let mut outs = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(batch) {
            outs.extend(tr.translate_batch(chunk)?);
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = match (c0, cpu_seconds()) {
            (Some(a), Some(b)) => format!("{:.2}", b - a),
            _ => "null".to_string(),
        };
        println!(
            "{{\"round\":{round},\"seconds\":{secs:.6},\"cpu_seconds\":{cpu},\"sentences\":{}}}",
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
