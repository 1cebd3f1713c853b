//! `voiceprint audit`: export the audit log.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use voiceprint::store::{MasterKey, RedbStore, Store};

/// Export the audit log of a store (run it while the server is stopped: the store file is locked
/// by a running server).
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Store directory [env VOICEPRINT_DATA_DIR; default ./voiceprint-data].
    #[arg(long, env = "VOICEPRINT_DATA_DIR", default_value = "voiceprint-data")]
    data_dir: PathBuf,
    /// Only events at or after this time (RFC 3339, e.g. 2026-11-30T00:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints the events.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let since_ms = match &args.since {
        Some(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--since {s:?} is not RFC 3339"))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
        }
        None => i64::MIN,
    };
    anyhow::ensure!(
        args.data_dir.join(voiceprint::store::DB_FILE).is_file(),
        "no store in {}",
        args.data_dir.display()
    );
    // The audit log is not encrypted and no voiceprint is opened: a throwaway key suffices.
    let store =
        RedbStore::open(&args.data_dir, MasterKey::generate()).context("opening the store")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failure = None;
    store.audit_since(since_ms, &mut |ev| {
        let line = if args.json {
            serde_json::to_string(&ev).map_err(anyhow::Error::from)
        } else {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(ev.time_unix_ms) * 1_000_000,
            )
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
            Ok(format!(
                "{t} {} {} speaker={} watchlist={} decision={} score={} llr={} id={}",
                ev.tenant,
                ev.action,
                ev.speaker_id.as_deref().unwrap_or("-"),
                ev.watchlist_id.as_deref().unwrap_or("-"),
                ev.decision,
                ev.score.map_or("-".into(), |s| format!("{s:.3}")),
                ev.llr.map_or("-".into(), |s| format!("{s:.3}")),
                ev.decision_id
            ))
        };
        match line.and_then(|l| writeln!(out, "{l}").map_err(anyhow::Error::from)) {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    out.flush()?;
    Ok(())
}
