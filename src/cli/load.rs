//! `voiceprint load`: a bounded load generator for Verify over loopback.
//!
//! With `--anchor`, every level is followed by the same analysis run in this process on the same
//! bytes (decode, front end, VAD, embedding; no gRPC, store or audit): one request at a time on
//! one core, and at concurrency 1 also on every core. The server's figures are then read against
//! a pipeline measured in the same window, which matters on a shared machine where the speed of
//! the same binary drifts by tens of percent within minutes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::Channel;

use voiceprint::audio::{DecodeOptions, Encoding, decode_file};
use voiceprint::pipeline::{Engine, EngineConfig, with_embed_threads};
use voiceprint::proto::v1 as pb;
use voiceprint::proto::v1::voiceprint_client::VoiceprintClient;

/// Measure Verify latency and throughput: enrols one speaker, then sends 10 s of 8 kHz µ-law
/// (made from `--probe`) at each concurrency level. Loopback servers only.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Server URL (must be a loopback address).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Bearer token.
    #[arg(long, env = "VOICEPRINT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Enrolment audio (any supported file).
    #[arg(long)]
    enroll: PathBuf,
    /// Probe audio; its first 10 s (looped if shorter) are sent as 8 kHz µ-law.
    #[arg(long)]
    probe: PathBuf,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Requests per level.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Time cap per level, seconds.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Server process id, to report its peak RSS (VmHWM).
    #[arg(long)]
    server_pid: Option<u32>,
    /// After each level, run the same analysis in this process (same bytes, default model and
    /// configuration) as many times, one at a time: on one core, and at concurrency 1 on all cores
    /// too. Prints the anchor columns: the pipeline's p50, its one-core rate, and the level's
    /// throughput as a share of that rate × the number of cores.
    #[arg(long)]
    anchor: bool,
    /// Model file for `--anchor` (default: the fetched default model).
    #[arg(long)]
    model: Option<PathBuf>,
}

/// The in-process pipeline `--anchor` compares the server with.
struct Anchor {
    engine: Arc<Engine>,
    cores: usize,
}

/// One anchor measurement: latencies of sequential analyses.
struct AnchorRun {
    p50_ms: f64,
    rate: f64,
}

impl Anchor {
    fn load(model: Option<PathBuf>) -> anyhow::Result<Self> {
        let path = match model {
            Some(p) => p,
            None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())
                .context("the default model (or pass --model)")?,
        };
        let engine = Engine::load(EngineConfig::new(path)).context("cannot load the model")?;
        Ok(Self {
            engine: Arc::new(engine),
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        })
    }

    /// `n` analyses of `bytes` one after another, each embedding on `threads` threads, stopping
    /// early at `deadline`.
    async fn run(
        &self,
        bytes: Arc<Vec<u8>>,
        n: usize,
        threads: usize,
        deadline: Instant,
    ) -> anyhow::Result<AnchorRun> {
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || {
            let opts = DecodeOptions {
                encoding: Encoding::Mulaw,
                sample_rate: Some(8000),
                ..Default::default()
            };
            let started = Instant::now();
            let mut lat = Vec::with_capacity(n);
            while lat.len() < n && (lat.is_empty() || Instant::now() < deadline) {
                let t = Instant::now();
                with_embed_threads(threads, || engine.analyze(&bytes, &opts))
                    .context("anchor analysis")?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            Ok(AnchorRun {
                p50_ms: percentile(&lat, 0.5),
                rate,
            })
        })
        .await?
    }
}

/// The `p` quantile (nearest rank) of sorted values; NaN when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Runs the levels and prints one line per level.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let host = args
        .server
        .split("://")
        .nth(1)
        .and_then(|r| r.rsplit_once(':'))
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .context("--server must be like http://127.0.0.1:50051")?;
    anyhow::ensure!(
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
        "the load generator only targets loopback servers"
    );
    anyhow::ensure!(
        args.requests > 0 && args.requests <= 100_000,
        "--requests must be 1..=100000"
    );
    anyhow::ensure!(
        args.concurrency.iter().all(|&c| (1..=256).contains(&c)),
        "concurrency must be 1..=256"
    );
    anyhow::ensure!(
        args.max_seconds > 0.0 && args.max_seconds <= 3600.0,
        "--max-seconds must be in (0, 3600]"
    );
    let probe = mulaw_10s(&args.probe)?;
    let anchor = if args.anchor {
        Some(Anchor::load(args.model.clone())?)
    } else {
        None
    };
    let enroll = std::fs::read(&args.enroll)
        .with_context(|| format!("reading {}", args.enroll.display()))?;
    let token: Token = args
        .token
        .as_ref()
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .context("token")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let channel = Channel::from_shared(args.server.clone())?
            .connect()
            .await
            .context("connecting")?;
        let client = VoiceprintClient::new(channel);
        let speaker = format!("load-{}", std::process::id());
        let e = client
            .clone()
            .enroll(with_token(
                &token,
                pb::EnrollRequest {
                    speaker_id: speaker.clone(),
                    audio: vec![pb::Audio {
                        data: enroll,
                        ..Default::default()
                    }],
                    overwrite: true,
                    ..Default::default()
                },
            ))
            .await
            .map_err(|s| anyhow::anyhow!("enrol: {s}"))?
            .into_inner();
        println!(
            "enrolled {speaker}: net speech {:.1}s",
            e.net_speech_seconds
        );
        let probe = Arc::new(probe);
        let audio = pb::Audio {
            data: probe.as_ref().clone(),
            encoding: pb::Encoding::Mulaw as i32,
            sample_rate: 8000,
            ..Default::default()
        };
        match &anchor {
            None => {
                println!("| concurrency | requests | errors | p50 ms | p99 ms | throughput req/s |");
                println!("|---|---|---|---|---|---|");
            }
            Some(a) => {
                println!(
                    "| concurrency | requests | errors | p50 ms | p99 ms | throughput req/s \
                     | pipeline p50 ms, {} cores | pipeline p50 ms, 1 core | pipeline req/s, 1 core \
                     | throughput / (1-core rate × {}) |",
                    a.cores, a.cores
                );
                println!("|---|---|---|---|---|---|---|---|---|---|");
            }
        }
        for &conc in &args.concurrency {
            let started = Instant::now();
            let deadline = started + Duration::from_secs_f64(args.max_seconds);
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (mut c, next, audio, speaker) = (
                    client.clone(),
                    Arc::clone(&next),
                    audio.clone(),
                    speaker.clone(),
                );
                let token = token.clone();
                let total = args.requests;
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0usize;
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total
                        && Instant::now() < deadline
                    {
                        let t = Instant::now();
                        let r = c
                            .verify(with_token(
                                &token,
                                pb::VerifyRequest {
                                    speaker_id: speaker.clone(),
                                    audio: Some(audio.clone()),
                                    target_far: None,
                                },
                            ))
                            .await;
                        match r {
                            Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                            Err(_) => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let mut lat = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (l, e) = t.await?;
                lat.extend(l);
                errors += e;
            }
            let wall = started.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            let throughput = lat.len() as f64 / wall;
            let row = format!(
                "| {conc} | {} | {errors} | {:.1} | {:.1} | {throughput:.2} |",
                lat.len(),
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
            );
            match &anchor {
                None => println!("{row}"),
                Some(a) => {
                    let n = lat.len().max(1);
                    let cap = Instant::now() + Duration::from_secs_f64(args.max_seconds);
                    let all = if conc == 1 {
                        let r = a.run(Arc::clone(&probe), n, a.cores, cap).await?;
                        format!("{:.1}", r.p50_ms)
                    } else {
                        "–".to_string()
                    };
                    let cap = Instant::now() + Duration::from_secs_f64(args.max_seconds);
                    let one = a.run(Arc::clone(&probe), n, 1, cap).await?;
                    println!(
                        "{row} {all} | {:.1} | {:.2} | {:.0} % |",
                        one.p50_ms,
                        one.rate,
                        100.0 * throughput / (one.rate * a.cores as f64)
                    );
                }
            }
        }
        if let Some(pid) = args.server_pid {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .context("reading server status")?;
            if let Some(l) = status.lines().find(|l| l.starts_with("VmHWM")) {
                println!("server peak RSS: {}", l.trim_start_matches("VmHWM:").trim());
            }
        }
        let _ = client
            .clone()
            .delete_speaker(with_token(
                &token,
                pb::DeleteSpeakerRequest {
                    speaker_id: speaker,
                    ..Default::default()
                },
            ))
            .await;
        anyhow::Ok(())
    })
}

type Token = Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>;

fn with_token<T>(token: &Token, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", t.clone());
    }
    r
}

/// The first 10 s of a file at 8 kHz as µ-law (looped when shorter).
fn mulaw_10s(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let d = decode_file(path, &DecodeOptions::default())
        .with_context(|| format!("decoding {}", path.display()))?;
    anyhow::ensure!(
        d.waveform.sample_rate == 8000,
        "--probe must be 8 kHz audio"
    );
    anyhow::ensure!(!d.waveform.samples.is_empty(), "--probe is empty");
    Ok(d.waveform
        .samples
        .iter()
        .cycle()
        .take(80_000)
        .map(|&s| voiceprint::audio::g711::linear_to_ulaw(s.clamp(-32768.0, 32767.0) as i16))
        .collect())
}
