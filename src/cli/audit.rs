//! `voiceprint audit`: export the audit log, from a running server or from a stopped server's store.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use voiceprint::proto::v1 as pb;
use voiceprint::store::{AuditEvent, MasterKey, RedbStore, Store};

use super::client::{Conn, ConnectArgs, runtime};

/// Events asked for per page from a server.
const PAGE: u32 = 10_000;

/// Export the audit log: by default the caller's tenant's events from the running server at
/// `--server`; with `--data-dir`, every tenant's events read from the store file of a stopped
/// server (a running server locks it).
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Read this store directory directly instead of asking a server (the server must be stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-11-30T00:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connect: ConnectArgs,
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
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match &args.data_dir {
        Some(dir) => from_store(dir, since_ms, args.json, &mut out)?,
        None => from_server(&args.connect, since_ms, args.json, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

fn from_store(
    dir: &std::path::Path,
    since_ms: i64,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.join(voiceprint::store::DB_FILE).is_file(),
        "no store in {}",
        dir.display()
    );
    // The audit log is not encrypted and no voiceprint is opened: a throwaway key suffices.
    let store = RedbStore::open(dir, MasterKey::generate()).with_context(|| {
        format!(
            "opening the store in {} (if a server is running on it, drop --data-dir to ask the server)",
            dir.display()
        )
    })?;
    let mut failure = None;
    store.audit_since(since_ms, &mut |ev| match print(out, &ev, json) {
        Ok(()) => true,
        Err(e) => {
            failure = Some(e);
            false
        }
    })?;
    failure.map_or(Ok(()), Err)
}

fn from_server(
    connect: &ConnectArgs,
    since_ms: i64,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut c = Conn::new(connect).await?;
        let mut after_seq = 0;
        loop {
            let mut stream = c
                .client
                .export_audit(c.req(pb::ExportAuditRequest {
                    since_unix_ms: since_ms.max(0),
                    after_seq,
                    limit: PAGE,
                }))
                .await
                .context("ExportAudit")?
                .into_inner();
            let mut n = 0;
            while let Some(r) = stream.message().await.context("ExportAudit")? {
                after_seq = r.seq;
                n += 1;
                print(out, &event_from_pb(r), json)?;
            }
            if n < PAGE {
                return Ok(());
            }
        }
    })
}

fn event_from_pb(r: pb::AuditRecord) -> AuditEvent {
    let opt = |s: String| (!s.is_empty()).then_some(s);
    AuditEvent {
        seq: r.seq,
        time_unix_ms: r.time_unix_ms,
        tenant: r.tenant,
        action: r.action,
        speaker_id: opt(r.speaker_id),
        watchlist_id: opt(r.watchlist_id),
        decision: r.decision,
        score: r.score,
        llr: r.llr,
        threshold: r.threshold,
        model_version: r.model_version,
        calibration_version: r.calibration_version,
        decision_id: r.decision_id,
        request_id: opt(r.request_id),
        detail: opt(r.detail),
    }
}

fn print(out: &mut impl Write, ev: &AuditEvent, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, ev)?;
        writeln!(out)?;
        return Ok(());
    }
    let t =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ev.time_unix_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    writeln!(
        out,
        "{t} {} {} speaker={} watchlist={} decision={} score={} llr={} id={}",
        ev.tenant,
        ev.action,
        ev.speaker_id.as_deref().unwrap_or("-"),
        ev.watchlist_id.as_deref().unwrap_or("-"),
        ev.decision,
        ev.score.map_or("-".into(), |s| format!("{s:.3}")),
        ev.llr.map_or("-".into(), |s| format!("{s:.3}")),
        ev.decision_id
    )?;
    Ok(())
}
