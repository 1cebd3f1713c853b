//! `voiceprint batch`: post-complaint matching of a whole manifest through the `BatchMatch` RPC,
//! against a running server (`--server`) or an in-process one over a data directory
//! (`--data-dir`). Resumable: rows already in `--out` are skipped and new rows appended.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tonic::Code;

use voiceprint::config::{Config, DEFAULT_TENANT, TenantConfig};
use voiceprint::pipeline::{Engine, EngineConfig};
use voiceprint::proto::v1 as pb;

use super::client::{Conn, ConnectArgs};
use super::manifest::{self, BadRow, ComplaintRow};

/// Verify every complainant of a manifest against the customer's voiceprint and search the
/// gallery and watchlists for the voice; one output row per complaint.
#[derive(clap::Args)]
pub struct BatchArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// CSV manifest with columns `complaint_id,customer_id,audio[,channel]`; audio paths are
    /// relative to the manifest's folder, channel is default, mix, left, right or an index.
    #[arg(long)]
    manifest: PathBuf,
    /// Output file (JSON lines or CSV). Re-running with the same file skips the complaints already
    /// in it and appends the others.
    #[arg(long)]
    out: PathBuf,
    /// Output format; by default from the extension of --out (.jsonl/.json or .csv).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Work directly on this data directory with an in-process server instead of --server (not
    /// while a server holds it).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With --data-dir: the tenant whose customers, gallery and watchlists are used.
    #[arg(long, default_value = DEFAULT_TENANT, requires = "data_dir")]
    tenant: String,
    /// With --data-dir: server configuration file (master key file, limits, default FAR).
    #[arg(long, requires = "data_dir")]
    config: Option<PathBuf>,
    /// With --data-dir: CAM++ checkpoint; fetched into the default model folder when not given.
    #[arg(long, env = "VOICEPRINT_MODEL")]
    model: Option<PathBuf>,
    /// Gallery and watchlist hits to report per complaint.
    #[arg(long, default_value_t = 5)]
    top_k: u32,
    /// Target false-accept rate of the decisions and hits (server default when absent).
    #[arg(long)]
    far: Option<f64>,
    /// Complaints per request.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Audio bytes per request (a larger file is sent alone).
    #[arg(long, default_value_t = 16 << 20)]
    max_request_bytes: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// No progress bar and no per-row messages (the bar is also hidden when stderr is not a
    /// terminal); the summary is still printed.
    #[arg(long, short)]
    quiet: bool,
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header.
    Csv,
}

/// Columns of the CSV output, in order.
const CSV_HEADER: [&str; 13] = [
    "complaint_id",
    "customer_id",
    "decision",
    "score",
    "llr",
    "top_hits",
    "duration_seconds",
    "net_speech_seconds",
    "snr_db",
    "clipping_ratio",
    "quality_warnings",
    "error",
    "manifest_line",
];

/// Tries of a request that failed for a passing reason (server unavailable, connection lost).
const MAX_TRIES: u32 = 4;
/// Failed rows listed one by one in the summary.
const LISTED_FAILURES: usize = 20;

/// One row of the output.
#[derive(Debug, Default, Serialize)]
struct OutRow {
    complaint_id: String,
    customer_id: String,
    decision: Option<String>,
    score: Option<f64>,
    llr: Option<f64>,
    top_hits: Vec<HitOut>,
    duration_seconds: Option<f64>,
    net_speech_seconds: Option<f64>,
    snr_db: Option<f64>,
    clipping_ratio: Option<f64>,
    quality_warnings: Vec<String>,
    error: Option<String>,
    manifest_line: u64,
}

#[derive(Debug, Serialize)]
struct HitOut {
    id: String,
    score: f64,
    llr: f64,
}

impl OutRow {
    fn failed(line: u64, complaint_id: &str, customer_id: &str, error: String) -> Self {
        Self {
            complaint_id: complaint_id.to_string(),
            customer_id: customer_id.to_string(),
            error: Some(error),
            manifest_line: line,
            ..Self::default()
        }
    }

    fn from_result(line: u64, r: pb::BatchMatchResult) -> Self {
        if !r.error.is_empty() {
            return Self::failed(line, &r.complaint_id, &r.customer_id, r.error);
        }
        let decision = pb::Decision::try_from(r.decision).ok();
        let scored = matches!(decision, Some(pb::Decision::Accept | pb::Decision::Reject));
        let analysed = r.quality.is_some();
        let q = r.quality.unwrap_or_default();
        Self {
            complaint_id: r.complaint_id,
            customer_id: r.customer_id,
            decision: Some(
                decision.map_or_else(|| r.decision.to_string(), |d| d.as_str_name().to_string()),
            ),
            score: scored.then_some(r.score),
            llr: scored.then_some(r.llr),
            top_hits: r
                .top_hits
                .into_iter()
                .map(|h| HitOut {
                    id: h.id,
                    score: h.score,
                    llr: h.llr,
                })
                .collect(),
            duration_seconds: analysed.then_some(q.duration_seconds),
            net_speech_seconds: analysed.then_some(q.net_speech_seconds),
            snr_db: analysed.then_some(q.snr_db),
            clipping_ratio: analysed.then_some(q.clipping_ratio),
            quality_warnings: q.warnings,
            error: None,
            manifest_line: line,
        }
    }

    fn encode(&self, format: Format) -> anyhow::Result<Vec<u8>> {
        match format {
            Format::Jsonl => {
                let mut line = serde_json::to_vec(self)?;
                line.push(b'\n');
                Ok(line)
            }
            Format::Csv => {
                let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                let hits = self
                    .top_hits
                    .iter()
                    .map(|h| format!("{}:{:.4}", h.id, h.score))
                    .collect::<Vec<_>>()
                    .join(";");
                let mut w = csv::Writer::from_writer(Vec::new());
                w.write_record([
                    self.complaint_id.clone(),
                    self.customer_id.clone(),
                    self.decision.clone().unwrap_or_default(),
                    num(self.score),
                    num(self.llr),
                    hits,
                    num(self.duration_seconds),
                    num(self.net_speech_seconds),
                    num(self.snr_db),
                    num(self.clipping_ratio),
                    self.quality_warnings.join(";"),
                    self.error.clone().unwrap_or_default(),
                    self.manifest_line.to_string(),
                ])?;
                Ok(w.into_inner()?)
            }
        }
    }
}

/// What the writer is told.
enum Event {
    /// A row to append.
    Row(OutRow),
    /// A complaint left for a later run (the server could not be reached).
    Unprocessed {
        complaint_id: String,
        reason: String,
    },
}

/// What was written in this run.
#[derive(Default)]
struct Tally {
    decisions: BTreeMap<String, usize>,
    failed: Vec<(String, String)>,
    unprocessed: Vec<(String, String)>,
}

/// Complaints already in an output file.
#[derive(Default)]
struct Done {
    ids: HashSet<String>,
    /// Manifest lines of rows written without a complaint id.
    lines: HashSet<u64>,
}

impl Done {
    fn contains(&self, complaint_id: &str, line: u64) -> bool {
        if complaint_id.is_empty() {
            self.lines.contains(&line)
        } else {
            self.ids.contains(complaint_id)
        }
    }

    fn add(&mut self, complaint_id: &str, line: Option<u64>) {
        if !complaint_id.is_empty() {
            self.ids.insert(complaint_id.to_string());
        } else if let Some(line) = line {
            self.lines.insert(line);
        }
    }
}

/// The output file, open for appending.
struct Output {
    file: File,
    format: Format,
}

impl Output {
    /// Opens `path` for appending, reading the complaints already in it. An incomplete last row
    /// (a crash in the middle of a write) is cut off; a file that is not a batch output is refused.
    fn open(path: &Path, format: Format) -> anyhow::Result<(Self, Done, bool)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let cut = complete < bytes.len();
        if cut {
            bytes.truncate(complete);
            file.set_len(complete as u64)
                .with_context(|| format!("cannot truncate {}", path.display()))?;
        }
        file.seek(SeekFrom::End(0))?;
        let done = match format {
            Format::Jsonl => read_done_jsonl(path, &bytes)?,
            Format::Csv => read_done_csv(path, &bytes)?,
        };
        let mut out = Self { file, format };
        if format == Format::Csv && bytes.is_empty() {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(CSV_HEADER)?;
            out.append(&w.into_inner()?)?;
        }
        Ok((out, done, cut))
    }

    fn append(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        // One write per row, straight to the file: a row is either whole on disk or cut off (and
        // then dropped on the next run), never buffered in this process.
        self.file.write_all(bytes)?;
        Ok(())
    }

    fn write(&mut self, row: &OutRow) -> anyhow::Result<()> {
        let bytes = row.encode(self.format)?;
        self.append(&bytes)
    }
}

fn read_done_jsonl(path: &Path, bytes: &[u8]) -> anyhow::Result<Done> {
    let mut done = Done::default();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).ok().unwrap_or_default();
        let Some(id) = v.get("complaint_id").and_then(serde_json::Value::as_str) else {
            bail!(
                "{} line {} is not a batch result; refusing to append to it (choose another --out)",
                path.display(),
                i + 1
            );
        };
        done.add(
            id,
            v.get("manifest_line").and_then(serde_json::Value::as_u64),
        );
    }
    Ok(done)
}

fn read_done_csv(path: &Path, bytes: &[u8]) -> anyhow::Result<Done> {
    let mut done = Done::default();
    if bytes.is_empty() {
        return Ok(done);
    }
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader.headers()?.clone();
    if !headers.iter().eq(CSV_HEADER) {
        bail!(
            "{} has other columns than a batch result ({}); refusing to append to it (choose another --out)",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        );
    }
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        done.add(
            record.get(0).unwrap_or_default(),
            record.get(12).and_then(|l| l.parse().ok()),
        );
    }
    Ok(done)
}

fn format_of(args: &BatchArgs) -> anyhow::Result<Format> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    match args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "json" | "ndjson") => Ok(Format::Jsonl),
        Some("csv") => Ok(Format::Csv),
        _ => bail!(
            "cannot tell the format of {} from its extension: use .jsonl or .csv, or --format",
            args.out.display()
        ),
    }
}

/// A complaint to send, with the audio size used to fill requests.
struct Todo {
    row: ComplaintRow,
    bytes: u64,
}

/// Runs `voiceprint batch`.
pub fn run(args: BatchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size >= 1, "--batch-size must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    let format = format_of(&args)?;
    let local = match &args.data_dir {
        Some(dir) => Some(local_config(&args, dir)?),
        None => None,
    };
    let manifest = manifest::read(&args.manifest)?;
    let total = manifest.rows.len() + manifest.bad.len();
    anyhow::ensure!(
        total > 0,
        "manifest {} has no rows",
        args.manifest.display()
    );
    let (mut output, done, cut) = Output::open(&args.out, format)?;
    if cut {
        eprintln!(
            "{}: dropped an incomplete last row (it will be redone)",
            args.out.display()
        );
    }

    // Decide what to do with every manifest row, in file order.
    let mut skipped = 0usize;
    let mut duplicates: Vec<(String, String)> = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut bad_rows: Vec<BadRow> = Vec::new();
    let mut todo: Vec<Todo> = Vec::new();
    let mut early_failures: Vec<OutRow> = Vec::new();
    let mut entries: Vec<Result<ComplaintRow, BadRow>> = manifest
        .rows
        .into_iter()
        .map(Ok)
        .chain(manifest.bad.into_iter().map(Err))
        .collect();
    entries.sort_by_key(|e| match e {
        Ok(r) => r.line,
        Err(b) => b.line,
    });
    for entry in entries {
        let (id, line) = match &entry {
            Ok(r) => (r.complaint_id.clone(), r.line),
            Err(b) => (b.complaint_id.clone(), b.line),
        };
        if done.contains(&id, line) {
            skipped += 1;
            continue;
        }
        if !id.is_empty() {
            if let Some(first) = first_line.get(&id) {
                duplicates.push((
                    format!("line {line}"),
                    format!("duplicate complaint_id {id:?} (first at line {first}); not processed"),
                ));
                continue;
            }
            first_line.insert(id.clone(), line);
        }
        match entry {
            Err(bad) => bad_rows.push(bad),
            Ok(row) => match std::fs::metadata(&row.audio) {
                Ok(m) if m.is_file() => todo.push(Todo {
                    bytes: m.len(),
                    row,
                }),
                Ok(_) => early_failures.push(OutRow::failed(
                    row.line,
                    &row.complaint_id,
                    &row.customer_id,
                    format!("audio {} is not a file", row.audio.display()),
                )),
                Err(e) => early_failures.push(OutRow::failed(
                    row.line,
                    &row.complaint_id,
                    &row.customer_id,
                    format!("cannot read audio {}: {e}", row.audio.display()),
                )),
            },
        }
    }
    for bad in bad_rows {
        early_failures.push(OutRow::failed(
            bad.line,
            &bad.complaint_id,
            &bad.customer_id,
            format!("bad manifest row {}: {}", bad.line, bad.message),
        ));
    }
    early_failures.sort_by_key(|r| r.manifest_line);

    let to_write = todo.len() + early_failures.len();
    let bar = progress_bar(to_write, args.quiet);
    let mut tally = Tally::default();
    for row in &early_failures {
        output.write(row)?;
        note(&bar, &mut tally, row, args.quiet);
    }
    bar.inc(early_failures.len() as u64);

    let started = Instant::now();
    let sent = todo.len();
    let fatal = if todo.is_empty() {
        None
    } else {
        let groups = group(todo, args.batch_size, args.max_request_bytes);
        let settings = Settings {
            top_k: args.top_k,
            far: args.far,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        match local {
            None => runtime.block_on(async {
                let conn = Conn::new(&args.connect).await?;
                drive(
                    conn,
                    groups,
                    settings,
                    args.concurrency,
                    &mut output,
                    &bar,
                    &mut tally,
                    args.quiet,
                )
                .await
            })?,
            Some(config) => {
                let engine = load_engine(args.model.clone())?;
                let (output, tally, bar) = (&mut output, &mut tally, &bar);
                let (concurrency, quiet) = (args.concurrency, args.quiet);
                runtime.block_on(with_local_server(
                    config,
                    engine,
                    &args.connect,
                    move |conn| async move {
                        drive(
                            conn,
                            groups,
                            settings,
                            concurrency,
                            output,
                            bar,
                            tally,
                            quiet,
                        )
                        .await
                    },
                ))?
            }
        }
    };
    bar.finish_and_clear();
    output
        .file
        .sync_data()
        .with_context(|| format!("cannot sync {}", args.out.display()))?;

    let decided: usize = tally.decisions.values().sum();
    summary(
        &args.out,
        &tally,
        &duplicates,
        skipped,
        decided,
        sent,
        started.elapsed(),
    );
    if let Some(e) = fatal {
        return Err(e);
    }
    if decided == 0 && (to_write > 0 || !duplicates.is_empty()) {
        bail!("no complaint could be processed");
    }
    Ok(())
}

fn progress_bar(len: usize, quiet: bool) -> ProgressBar {
    let target = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "complaints {bar:40} {pos}/{len} [{elapsed} < {eta}, {per_sec}]",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Counts a written row and reports a failed one.
fn note(bar: &ProgressBar, tally: &mut Tally, row: &OutRow, quiet: bool) {
    let name = if row.complaint_id.is_empty() {
        format!("manifest line {}", row.manifest_line)
    } else {
        format!("complaint {}", row.complaint_id)
    };
    match (&row.error, &row.decision) {
        (Some(e), _) => {
            if !quiet {
                bar.suspend(|| eprintln!("{name}: failed: {e}"));
            }
            tally.failed.push((name, e.clone()));
        }
        (None, Some(d)) => *tally.decisions.entry(d.clone()).or_default() += 1,
        (None, None) => {}
    }
}

/// Splits the complaints into requests of at most `size` complaints and `max_bytes` of audio.
fn group(todo: Vec<Todo>, size: usize, max_bytes: u64) -> Vec<Vec<Todo>> {
    let mut groups: Vec<Vec<Todo>> = Vec::new();
    let mut bytes = 0u64;
    for t in todo {
        let fits = groups.last().is_some_and(|g| {
            g.len() < size && (g.is_empty() || bytes.saturating_add(t.bytes) <= max_bytes)
        });
        if !fits {
            groups.push(Vec::new());
            bytes = 0;
        }
        bytes = bytes.saturating_add(t.bytes);
        if let Some(g) = groups.last_mut() {
            g.push(t);
        }
    }
    groups
}

#[derive(Clone, Copy)]
struct Settings {
    top_k: u32,
    far: Option<f64>,
}

/// Sends the requests, `concurrency` at a time, and writes the results as they arrive.
/// Returns the error that stopped the batch, if one did.
#[allow(clippy::too_many_arguments)]
async fn drive(
    conn: Conn,
    groups: Vec<Vec<Todo>>,
    settings: Settings,
    concurrency: usize,
    output: &mut Output,
    bar: &ProgressBar,
    tally: &mut Tally,
    quiet: bool,
) -> anyhow::Result<Option<anyhow::Error>> {
    let conn = Arc::new(conn);
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut groups = groups.into_iter();
    let mut fatal: Option<anyhow::Error> = None;
    let mut sending = true;
    loop {
        tokio::select! {
            permit = Arc::clone(&slots).acquire_owned(), if sending && fatal.is_none() => {
                let Ok(permit) = permit else { break };
                match groups.next() {
                    Some(g) => {
                        tasks.spawn(request(Arc::clone(&conn), g, settings, tx.clone(), permit));
                    }
                    None => sending = false,
                }
            }
            Some(joined) = tasks.join_next() => {
                let failure = match joined {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(anyhow::anyhow!("request task failed: {e}")),
                };
                if let Some(e) = failure
                    && fatal.is_none()
                {
                    // Stop sending; the requests in flight are abandoned (their rows stay
                    // undone and are redone on the next run).
                    tasks.abort_all();
                    fatal = Some(e);
                }
            }
            Some(event) = rx.recv() => write_event(event, output, bar, tally, quiet)?,
            else => break,
        }
        if (!sending || fatal.is_some()) && tasks.is_empty() {
            break;
        }
    }
    drop(tx);
    while let Ok(event) = rx.try_recv() {
        write_event(event, output, bar, tally, quiet)?;
    }
    Ok(fatal)
}

fn write_event(
    event: Event,
    output: &mut Output,
    bar: &ProgressBar,
    tally: &mut Tally,
    quiet: bool,
) -> anyhow::Result<()> {
    match event {
        Event::Row(row) => {
            output.write(&row)?;
            note(bar, tally, &row, quiet);
        }
        Event::Unprocessed {
            complaint_id,
            reason,
        } => tally
            .unprocessed
            .push((format!("complaint {complaint_id}"), reason)),
    }
    bar.inc(1);
    Ok(())
}

/// A complaint of a request: its manifest row and the message sent for it.
struct Item {
    row: ComplaintRow,
    complaint: pb::Complaint,
}

/// Reads the audio of a group and runs it through BatchMatch, retrying what a passing failure
/// left unanswered and splitting the request when the server finds it too large. An error
/// return means the whole batch must stop (bad credentials or settings).
async fn request(
    conn: Arc<Conn>,
    group: Vec<Todo>,
    settings: Settings,
    tx: mpsc::UnboundedSender<Event>,
    _permit: OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let row_event = |row: OutRow| {
        let _ = tx.send(Event::Row(row));
    };
    let loaded = tokio::task::spawn_blocking(move || {
        group
            .into_iter()
            .map(|t| {
                let complaint = load(&t.row);
                (t.row, complaint)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let mut items = Vec::new();
    for (row, complaint) in loaded {
        match complaint {
            Ok(complaint) => items.push(Item { row, complaint }),
            Err(e) => row_event(OutRow::failed(
                row.line,
                &row.complaint_id,
                &row.customer_id,
                e,
            )),
        }
    }
    let mut queue: VecDeque<Vec<Item>> = VecDeque::from([items]);
    let mut tries = 0u32;
    while let Some(items) = queue.pop_front() {
        if items.is_empty() {
            continue;
        }
        let mut pending: HashMap<String, Item> = HashMap::with_capacity(items.len());
        let mut msg = pb::BatchMatchRequest {
            complaints: Vec::with_capacity(items.len()),
            top_k: settings.top_k,
            target_far: settings.far,
        };
        for item in items {
            msg.complaints.push(item.complaint.clone());
            pending.insert(item.row.complaint_id.clone(), item);
        }
        let n = u32::try_from(msg.complaints.len()).unwrap_or(u32::MAX);
        let mut req = conn.req(msg);
        req.set_timeout(conn.timeout().saturating_mul(n));
        let mut client = conn.client.clone();
        let failure = match client.batch_match(req).await {
            Err(status) => Some(status),
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(result)) => match pending.remove(&result.complaint_id) {
                            Some(item) => {
                                tries = 0;
                                row_event(OutRow::from_result(item.row.line, result));
                            }
                            None => tracing::warn!(
                                complaint_id = %result.complaint_id,
                                "result for a complaint that was not asked for"
                            ),
                        },
                        Ok(None) => {
                            break (!pending.is_empty()).then(|| {
                                tonic::Status::internal("the server ended the stream early")
                            });
                        }
                        Err(status) => break Some(status),
                    }
                }
            }
        };
        let Some(status) = failure else { continue };
        let mut left: Vec<Item> = pending.into_values().collect();
        left.sort_by_key(|i| i.row.line);
        match status.code() {
            Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Unimplemented
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::NotFound => {
                bail!(
                    "the server refused the batch: {:?}: {}",
                    status.code(),
                    status.message()
                );
            }
            Code::OutOfRange | Code::ResourceExhausted if left.len() > 1 => {
                let back = left.split_off(left.len() / 2);
                queue.push_front(back);
                queue.push_front(left);
            }
            Code::OutOfRange | Code::ResourceExhausted => {
                for item in left {
                    row_event(OutRow::failed(
                        item.row.line,
                        &item.row.complaint_id,
                        &item.row.customer_id,
                        format!("refused by the server: {}", status.message()),
                    ));
                }
            }
            _ => {
                tries += 1;
                if tries >= MAX_TRIES {
                    for item in left {
                        let _ = tx.send(Event::Unprocessed {
                            complaint_id: item.row.complaint_id,
                            reason: format!("{:?}: {}", status.code(), status.message()),
                        });
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(tries)).await;
                    queue.push_front(left);
                }
            }
        }
    }
    Ok(())
}

/// Reads the audio file of a row into a complaint message.
fn load(row: &ComplaintRow) -> Result<pb::Complaint, String> {
    let data = std::fs::read(&row.audio)
        .map_err(|e| format!("cannot read audio {}: {e}", row.audio.display()))?;
    let (channel, channel_index) = super::manifest::channel_pb(row.channel)?;
    Ok(pb::Complaint {
        complaint_id: row.complaint_id.clone(),
        customer_id: row.customer_id.clone(),
        audio: Some(pb::Audio {
            data,
            encoding: pb::Encoding::Auto as i32,
            channel: channel as i32,
            channel_index,
            ..Default::default()
        }),
    })
}

fn load_engine(model: Option<PathBuf>) -> anyhow::Result<Arc<Engine>> {
    let model_path = match model {
        Some(p) => p,
        None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())
            .context("cannot locate the CAM++ model")?,
    };
    Ok(Arc::new(
        Engine::load(EngineConfig::new(model_path)).context("cannot load the embedding engine")?,
    ))
}

/// The configuration of the in-process server: the data directory, a loopback port picked by
/// the system, and one throw-away token for the chosen tenant.
fn local_config(args: &BatchArgs, dir: &Path) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    config.data_dir = dir.to_path_buf();
    let db = dir.join(voiceprint::store::DB_FILE);
    anyhow::ensure!(
        db.is_file(),
        "no voiceprint store in {} ({} is missing): give the data directory of a server",
        dir.display(),
        db.display()
    );
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.tls = None;
    config.metrics_listen = None;
    config.tenants = vec![TenantConfig {
        name: args.tenant.clone(),
        tokens: vec![uuid::Uuid::new_v4().to_string()],
    }];
    Ok(config)
}

/// Starts the real server in-process on `config`, runs `work` against it and stops it.
async fn with_local_server<F, Fut>(
    config: Config,
    engine: Arc<Engine>,
    connect: &ConnectArgs,
    work: F,
) -> anyhow::Result<Option<anyhow::Error>>
where
    F: FnOnce(Conn) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<anyhow::Error>>>,
{
    let token = config
        .tenants
        .first()
        .and_then(|t| t.tokens.first())
        .cloned();
    let dir = config.data_dir.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = voiceprint::service::serve(config, engine, async {
        let _ = stopped.await;
    })
    .await
    .map_err(|e| match e {
        voiceprint::service::ServeError::Store(e) => anyhow::anyhow!(
            "cannot open the store in {}: {e} (is a server running on it? then use --server URL)",
            dir.display()
        ),
        other => anyhow::Error::new(other).context("cannot start the in-process server"),
    })?;
    let url = format!("http://{}", server.local_addr());
    let conn = Conn::new(&connect.with_server(url, token)).await?;
    let result = work(conn).await;
    let _ = stop.send(());
    server
        .wait()
        .await
        .context("the in-process server failed")?;
    result
}

fn summary(
    out: &Path,
    tally: &Tally,
    duplicates: &[(String, String)],
    skipped: usize,
    decided: usize,
    sent: usize,
    elapsed: Duration,
) {
    let decisions = if tally.decisions.is_empty() {
        "none".to_string()
    } else {
        tally
            .decisions
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rate = if sent > 0 && elapsed.as_secs_f64() > 0.0 {
        format!(
            " in {:.1} s ({:.2} complaints/s)",
            elapsed.as_secs_f64(),
            decided as f64 / elapsed.as_secs_f64()
        )
    } else {
        String::new()
    };
    eprintln!(
        "batch: {decided} complaints decided{rate}: {decisions}; {} failed, {} duplicate, {} left for a re-run, {skipped} skipped (already in {})",
        tally.failed.len(),
        duplicates.len(),
        tally.unprocessed.len(),
        out.display()
    );
    let listed = tally
        .failed
        .iter()
        .chain(duplicates)
        .chain(&tally.unprocessed);
    let count = tally.failed.len() + duplicates.len() + tally.unprocessed.len();
    if count > 0 {
        eprintln!("not decided:");
        for (name, why) in listed.take(LISTED_FAILURES) {
            eprintln!("  {name}: {why}");
        }
        if count > LISTED_FAILURES {
            eprintln!(
                "  ... and {} more (see the error column of {})",
                count - LISTED_FAILURES,
                out.display()
            );
        }
    }
    if !tally.unprocessed.is_empty() {
        eprintln!(
            "{} complaints could not be sent; run the same command again to do them",
            tally.unprocessed.len()
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn todo(id: &str, bytes: u64) -> Todo {
        Todo {
            row: ComplaintRow {
                line: 2,
                complaint_id: id.into(),
                customer_id: "c".into(),
                audio: PathBuf::from("a.wav"),
                channel: voiceprint::audio::ChannelSelect::Default,
            },
            bytes,
        }
    }

    #[test]
    fn groups_respect_count_and_bytes() {
        let t = vec![
            todo("a", 10),
            todo("b", 10),
            todo("c", 10),
            todo("d", 100),
            todo("e", 5),
        ];
        let sizes: Vec<Vec<String>> = group(t, 2, 25)
            .into_iter()
            .map(|g| g.into_iter().map(|t| t.row.complaint_id).collect())
            .collect();
        assert_eq!(sizes, vec![vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]);
    }

    #[test]
    fn rows_encode_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let row = OutRow::from_result(
            7,
            pb::BatchMatchResult {
                complaint_id: "c1".into(),
                customer_id: "cust".into(),
                decision: pb::Decision::Accept as i32,
                score: 0.8,
                llr: 5.0,
                quality: Some(pb::Quality {
                    duration_seconds: 3.0,
                    warnings: vec!["short".into()],
                    ..Default::default()
                }),
                top_hits: vec![
                    pb::Hit {
                        id: "speaker:cust".into(),
                        score: 0.8,
                        llr: 5.0,
                    },
                    pb::Hit {
                        id: "watchlist:w/e".into(),
                        score: 0.5,
                        llr: 2.0,
                    },
                ],
                error: String::new(),
            },
        );
        let csv = String::from_utf8(row.encode(Format::Csv).unwrap()).unwrap();
        assert_eq!(
            csv,
            "c1,cust,DECISION_ACCEPT,0.8,5,speaker:cust:0.8000;watchlist:w/e:0.5000,3,0,0,0,short,,7\n"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&row.encode(Format::Jsonl).unwrap()).unwrap();
        assert_eq!(json["decision"], "DECISION_ACCEPT");
        assert_eq!(json["top_hits"][1]["id"], "watchlist:w/e");
        assert_eq!(json["error"], serde_json::Value::Null);
        let not_enrolled = OutRow::from_result(
            8,
            pb::BatchMatchResult {
                complaint_id: "c2".into(),
                decision: pb::Decision::NotEnrolled as i32,
                ..Default::default()
            },
        );
        assert_eq!(not_enrolled.score, None);
        let failed = OutRow::failed(9, "", "", "bad row".into());

        for format in [Format::Jsonl, Format::Csv] {
            let path = dir.path().join(format!("out-{format:?}"));
            let (mut out, done, cut) = Output::open(&path, format).unwrap();
            assert!(done.ids.is_empty() && !cut);
            out.write(&row).unwrap();
            out.write(&failed).unwrap();
            drop(out);
            // A crash in the middle of a row leaves a partial line: it is dropped on reopening.
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"c3,partial").unwrap();
            drop(f);
            let (mut out, done, cut) = Output::open(&path, format).unwrap();
            assert!(cut);
            assert!(done.contains("c1", 0) && done.contains("", 9) && !done.contains("", 8));
            assert!(!done.contains("c3", 0));
            out.write(&not_enrolled).unwrap();
            drop(out);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("partial"));
            let header_lines = text
                .lines()
                .filter(|l| l.starts_with("complaint_id,"))
                .count();
            assert_eq!(header_lines, usize::from(format == Format::Csv));
            let (_, done, _) = Output::open(&path, format).unwrap();
            assert!(done.contains("c2", 0));
        }
        // Not a batch output: refused, not appended to.
        let other = dir.path().join("other.csv");
        std::fs::write(&other, "a,b\n1,2\n").unwrap();
        assert!(Output::open(&other, Format::Csv).is_err());
        let other = dir.path().join("other.jsonl");
        std::fs::write(&other, "hello\n").unwrap();
        assert!(Output::open(&other, Format::Jsonl).is_err());
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "hello\n");
    }
}
