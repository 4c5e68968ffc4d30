//! `facegate eval lfw`, `facegate eval identify` and `facegate eval mask`.

pub(crate) mod identify;
pub(crate) mod lfw;
mod mask;
pub(crate) mod metrics;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Subcommand;
use facegate::config::Config;

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// LFW verification: 10-fold accuracy, TAR at FAR 1e-3, detection failures.
    Lfw(lfw::LfwArgs),
    /// LFW 1:N identification: closed-set rank-1/rank-5, open-set DIR at 1 % false alarms.
    Identify(identify::IdentifyArgs),
    /// Mask classification accuracy on folders of masked and unmasked photos.
    Mask(mask::MaskArgs),
}

pub fn run(config: &Config, command: &EvalCommand) -> anyhow::Result<ExitCode> {
    match command {
        EvalCommand::Lfw(args) => lfw::run(config, args),
        EvalCommand::Identify(args) => identify::run(config, args),
        EvalCommand::Mask(args) => mask::run(config, args),
    }
}

/// Runs `work` over `items` on `threads` threads, in any order, returning results in
/// item order and ticking `bar` after each.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    bar: &indicatif::ProgressBar,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let chunks: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, work(item)));
                        bar.inc(1);
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (i, r) in chunks.into_iter().flatten() {
        results[i] = Some(r);
    }
    results.into_iter().flatten().collect()
}

/// `--threads N` of the eval commands and calibrate: 0 threads would embed nothing.
pub fn thread_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A cosine or margin on the command line: a number, not NaN or infinite.
pub fn finite_number(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("a finite number".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_counts_and_cosines_on_the_command_line_must_make_sense() {
        assert_eq!(super::thread_count("2"), Ok(2));
        assert!(super::thread_count("0").is_err());
        assert_eq!(super::finite_number("0.9"), Ok(0.9));
        for bad in ["nan", "inf", "-inf", "x"] {
            assert!(super::finite_number(bad).is_err(), "{bad}");
        }
    }
}
