//! `flagstaff eval`: a batch evaluator and debugger for flag data, with a fixed output contract
//! that other tools drive.
//!
//! `flagstaff eval --data DATA.json --contexts CONTEXTS.jsonl` prints one JSON object per line,
//! for each context in file order and for each flag in key order:
//! `{"context": <0-based line index>, "flag": "<key>", "value": <JSON>, "variationIndex": <int or
//! null>, "reason": <reason>}`. Where the result has no variation, `value` is `--default` (JSON,
//! default `null`), exactly as an SDK returns the caller's default. `--flag KEY` restricts the
//! output to one flag (an unknown key reports `FLAG_NOT_FOUND`, as an SDK would); `--explain`
//! adds an `explain` array describing which targets, rules and clauses matched and why.
//!
//! Every input is read and validated before anything is printed, so a malformed line produces
//! an error naming the line and field, a non-zero exit, and no partial output.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use flagstaff_eval::{Observer, Snapshot, Trace, ValueType};
use flagstaff_protocol::{Context, FlagData, Reason};
use serde::Serialize;
use serde_json::Value;

/// Arguments of `flagstaff eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Server-side flag data: `{"flags": {...}, "segments": {...}}`, or a stream `put` event's
    /// `{"path": "/", "data": {...}}`.
    #[arg(long, value_name = "DATA.json")]
    data: PathBuf,
    /// One context per line: single-kind, multi-kind or legacy user JSON. Blank lines are skipped
    /// (they keep their line index).
    #[arg(long, value_name = "CONTEXTS.jsonl")]
    contexts: PathBuf,
    /// The value reported where a result has no variation (an error, or off with no off
    /// variation), as JSON.
    #[arg(long, value_name = "JSON", default_value = "null")]
    default: String,
    /// Evaluate only this flag.
    #[arg(long, value_name = "KEY")]
    flag: Option<String>,
    /// Add a human-readable trace of the evaluation to each line.
    #[arg(long)]
    explain: bool,
}

/// One output line.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutputLine<'a> {
    context: usize,
    flag: &'a str,
    value: &'a Value,
    variation_index: Option<usize>,
    reason: &'a Reason<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<&'a [String]>,
}

fn read_contexts(path: &PathBuf) -> anyhow::Result<Vec<(usize, Context)>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut contexts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let where_ = || format!("{} line {} (context {index})", path.display(), index + 1);
        let json: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not valid JSON", where_()))?;
        let context =
            Context::from_json(&json).with_context(|| format!("{}: invalid context", where_()))?;
        contexts.push((index, context));
    }
    Ok(contexts)
}

/// Runs the command, writing JSON Lines to standard output.
pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let default: Value = serde_json::from_str(&args.default)
        .with_context(|| format!("--default {:?} is not valid JSON", args.default))?;
    let text = fs::read_to_string(&args.data)
        .with_context(|| format!("cannot read {}", args.data.display()))?;
    let data = FlagData::from_json_str(&text)
        .with_context(|| format!("{}: invalid flag data", args.data.display()))?;
    let contexts = read_contexts(&args.contexts)?;
    let snapshot = Snapshot::compile(&data);
    let keys: Vec<&str> = match &args.flag {
        Some(key) => vec![key.as_str()],
        None => snapshot.flags().map(|f| f.key()).collect(),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = (|| -> io::Result<()> {
        for (index, context) in &contexts {
            for &key in &keys {
                let mut trace = Trace::default();
                let detail = match snapshot.flag_id(key) {
                    Some(id) if args.explain => snapshot.evaluate_observed(id, context, &mut trace),
                    Some(id) => snapshot.evaluate_observed(id, context, &mut ()),
                    None => {
                        trace.explain(0, format_args!("flag {key:?} does not exist"));
                        snapshot.evaluate(key, context)
                    }
                };
                let typed = detail.with_default(&default, ValueType::Any);
                let line = OutputLine {
                    context: *index,
                    flag: key,
                    value: &typed.value,
                    variation_index: typed.variation_index,
                    reason: &typed.reason,
                    explain: args.explain.then_some(trace.lines.as_slice()),
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    })();
    match written {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => bail!("cannot write output: {e}"),
        Ok(()) => Ok(()),
    }
}
