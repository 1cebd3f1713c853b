//! Client commands over the gRPC API: `enroll`, `verify`, `identify`, `speaker`, `watchlist`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use voiceprint::proto::v1 as pb;
use voiceprint::proto::v1::voiceprint_client::VoiceprintClient;

/// Where and as whom to connect.
#[derive(clap::Args, Clone)]
pub struct ConnectArgs {
    /// Server URL (https:// for TLS).
    #[arg(
        long,
        env = "VOICEPRINT_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Bearer token.
    #[arg(long, env = "VOICEPRINT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for https://.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Request deadline, seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

/// How to read the audio files.
#[derive(clap::Args, Clone)]
pub struct AudioArgs {
    /// auto (container from the bytes), pcm16le, mulaw or alaw (headerless).
    #[arg(long, default_value = "auto")]
    encoding: String,
    /// Sample rate of headerless audio.
    #[arg(long, default_value_t = 0)]
    sample_rate: u32,
    /// Interleaved channels of headerless audio.
    #[arg(long, default_value_t = 1)]
    channels: u32,
    /// default, mix, left, right or a channel index.
    #[arg(long, default_value = "default")]
    channel: String,
}

impl AudioArgs {
    fn load(&self, path: &Path) -> anyhow::Result<pb::Audio> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let encoding = match self.encoding.as_str() {
            "auto" => pb::Encoding::Auto,
            "pcm16le" => pb::Encoding::Pcm16le,
            "mulaw" | "ulaw" => pb::Encoding::Mulaw,
            "alaw" => pb::Encoding::Alaw,
            other => anyhow::bail!("unknown --encoding {other:?}"),
        };
        let (channel, channel_index) = parse_channel(&self.channel)?;
        Ok(pb::Audio {
            data,
            encoding: encoding as i32,
            sample_rate: self.sample_rate,
            channel: channel as i32,
            channel_index,
            channels: self.channels,
        })
    }
}

/// `default`, `mix`, `left`, `right` or a channel index, as the proto names them.
fn parse_channel(name: &str) -> anyhow::Result<(pb::Channel, u32)> {
    Ok(match name {
        "default" | "" => (pb::Channel::Default, 0),
        "mix" => (pb::Channel::Mix, 0),
        "left" => (pb::Channel::Left, 0),
        "right" => (pb::Channel::Right, 0),
        n => (
            pb::Channel::Index,
            n.parse().with_context(|| format!("bad channel {n:?}"))?,
        ),
    })
}

/// Enrol a speaker (accumulates over calls).
#[derive(clap::Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    audio: AudioArgs,
    /// Speaker identifier.
    speaker_id: String,
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Reference to the recorded consent.
    #[arg(long)]
    consent: Option<String>,
    /// Replace the existing voiceprint.
    #[arg(long)]
    overwrite: bool,
}

/// Verify a speaker against one audio file.
#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    audio: AudioArgs,
    /// Claimed speaker identifier.
    speaker_id: String,
    /// Audio file.
    file: PathBuf,
    /// Target false-accept rate.
    #[arg(long)]
    far: Option<f64>,
}

/// Search the enrolled speakers (or a watchlist) for the voice in a file.
#[derive(clap::Args)]
pub struct IdentifyArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    audio: AudioArgs,
    /// Audio file.
    file: PathBuf,
    /// Number of candidates.
    #[arg(long, default_value_t = 5)]
    top_k: u32,
    /// Search only this watchlist.
    #[arg(long)]
    watchlist: Option<String>,
    /// Target false-accept rate.
    #[arg(long)]
    far: Option<f64>,
}

/// Speaker lifecycle.
#[derive(clap::Args)]
pub struct SpeakerArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    action: SpeakerAction,
}

#[derive(clap::Subcommand)]
enum SpeakerAction {
    /// Show a speaker's metadata.
    Get { speaker_id: String },
    /// Opt a speaker out (erases the voiceprint, blocks re-enrolment).
    OptOut { speaker_id: String },
    /// Delete a speaker for good, with its copies in watchlists unless told otherwise.
    Delete {
        /// The speaker to erase.
        speaker_id: String,
        /// Keep the copies of this voiceprint that were added to watchlists.
        #[arg(long)]
        keep_watchlist_copies: bool,
    },
}

/// Watchlists.
#[derive(clap::Args)]
pub struct WatchlistArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    audio: AudioArgs,
    #[command(subcommand)]
    action: WatchlistAction,
}

#[derive(clap::Subcommand)]
enum WatchlistAction {
    /// Create a watchlist.
    Create {
        watchlist_id: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List watchlists.
    List,
    /// Add an entry from an audio file (--file) or an enrolled speaker (--speaker).
    Add {
        watchlist_id: String,
        entry_id: String,
        #[arg(long, conflicts_with = "speaker")]
        file: Option<PathBuf>,
        #[arg(long)]
        speaker: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Add the voice of one cluster of `voiceprint recurring`: one entry per complaint of the
    /// cluster (`<entry-prefix>-<complaint_id>`), from the complaint's audio in the manifest.
    AddCluster {
        watchlist_id: String,
        /// The clusters.json written by `voiceprint recurring`.
        #[arg(long)]
        clusters: PathBuf,
        /// Which cluster: its 0-based position in clusters.json (0 = most confident).
        #[arg(long)]
        cluster: usize,
        /// The manifest given to `voiceprint recurring` (maps complaint ids to audio files).
        #[arg(long)]
        manifest: PathBuf,
        /// Entry ids are `<prefix>-<complaint_id>`; default `recurring-<N>`.
        #[arg(long)]
        entry_prefix: Option<String>,
        /// Create the watchlist first when it does not exist.
        #[arg(long)]
        create: bool,
        /// Note stored with every entry (default: the cluster's customers and confidence).
        #[arg(long)]
        note: Option<String>,
    },
    /// Remove an entry.
    Remove {
        watchlist_id: String,
        entry_id: String,
    },
}

/// A connected client with its bearer token and deadline.
pub(super) struct Conn {
    pub(super) client: VoiceprintClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: std::time::Duration,
}

impl ConnectArgs {
    /// The same deadline, for a plain-text server this process started itself.
    pub(super) fn with_server(&self, server: String, token: Option<String>) -> Self {
        Self {
            server,
            token,
            ca_cert: None,
            timeout: self.timeout,
        }
    }
}

impl Conn {
    pub(super) async fn new(a: &ConnectArgs) -> anyhow::Result<Self> {
        let mut endpoint = Channel::from_shared(a.server.clone()).context("bad --server URL")?;
        if let Some(ca) = &a.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
        } else if a.server.starts_with("https://") {
            endpoint = endpoint.tls_config(ClientTlsConfig::new().with_enabled_roots())?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", a.server))?;
        let token = match &a.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .context("token is not valid metadata")?,
            ),
            None => None,
        };
        anyhow::ensure!(
            a.timeout > 0.0 && a.timeout.is_finite(),
            "--timeout must be positive"
        );
        Ok(Self {
            client: VoiceprintClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            token,
            timeout: std::time::Duration::from_secs_f64(a.timeout),
        })
    }

    /// The deadline of one request (`--timeout`).
    pub(super) fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    pub(super) fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(super) fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

fn decision(d: i32) -> String {
    pb::Decision::try_from(d).map_or_else(|_| d.to_string(), |d| d.as_str_name().to_string())
}

fn print_quality(q: Option<&pb::Quality>) {
    if let Some(q) = q {
        println!(
            "quality: duration {:.2}s, net speech {:.2}s, snr {:.1} dB, clipping {:.4}{}",
            q.duration_seconds,
            q.net_speech_seconds,
            q.snr_db,
            q.clipping_ratio,
            if q.warnings.is_empty() {
                String::new()
            } else {
                format!(", warnings: {}", q.warnings.join(","))
            }
        );
    }
}

/// `voiceprint enroll`.
pub fn run_enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let audio = args
        .files
        .iter()
        .map(|f| args.audio.load(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    runtime()?.block_on(async {
        let mut c = Conn::new(&args.connect).await?;
        let r = c
            .client
            .enroll(c.req(pb::EnrollRequest {
                speaker_id: args.speaker_id,
                audio,
                consent_reference: args.consent,
                overwrite: args.overwrite,
            }))
            .await
            .map_err(status)?
            .into_inner();
        let st = pb::EnrollmentStatus::try_from(r.status).map_or("?", |s| s.as_str_name());
        println!(
            "{} {st}: net speech {:.1}s, {:.1}s more needed (decision {})",
            r.speaker_id, r.net_speech_seconds, r.required_speech_seconds, r.decision_id
        );
        for q in &r.quality {
            print_quality(Some(q));
        }
        Ok(())
    })
}

/// `voiceprint verify`.
pub fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    let audio = args.audio.load(&args.file)?;
    runtime()?.block_on(async {
        let mut c = Conn::new(&args.connect).await?;
        let r = c
            .client
            .verify(c.req(pb::VerifyRequest {
                speaker_id: args.speaker_id,
                audio: Some(audio),
                target_far: args.far,
            }))
            .await
            .map_err(status)?
            .into_inner();
        println!(
            "{}: score {:.3}, llr {:.3}, threshold {:.3} (FAR {}), decision {}",
            decision(r.decision),
            r.score,
            r.llr,
            r.threshold,
            r.target_far,
            r.decision_id
        );
        print_quality(r.quality.as_ref());
        Ok(())
    })
}

/// `voiceprint identify`.
pub fn run_identify(args: IdentifyArgs) -> anyhow::Result<()> {
    let audio = args.audio.load(&args.file)?;
    runtime()?.block_on(async {
        let mut c = Conn::new(&args.connect).await?;
        let r = c
            .client
            .identify(c.req(pb::IdentifyRequest {
                audio: Some(audio),
                top_k: args.top_k,
                watchlist_id: args.watchlist,
                target_far: args.far,
            }))
            .await
            .map_err(status)?
            .into_inner();
        if r.candidates.is_empty() {
            println!(
                "no candidate above threshold {:.3} ({})",
                r.threshold,
                decision(r.decision)
            );
        }
        for (i, cand) in r.candidates.iter().enumerate() {
            println!(
                "{}. {} score {:.3} llr {:.3}",
                i + 1,
                cand.speaker_id,
                cand.score,
                cand.llr
            );
        }
        print_quality(r.quality.as_ref());
        Ok(())
    })
}

fn print_speaker(s: &pb::Speaker) {
    let st = pb::SpeakerState::try_from(s.state).map_or("?", |s| s.as_str_name());
    println!(
        "{} {st}: net speech {:.1}s from {} audio, created {}, updated {}, last used {}, expires {}, model {}, consent {:?}",
        s.speaker_id,
        s.net_speech_seconds,
        s.enrollment_audio_count,
        s.created_unix,
        s.updated_unix,
        s.last_used_unix,
        s.expires_unix,
        s.model_version,
        s.consent_reference
    );
}

/// `voiceprint speaker`.
pub fn run_speaker(args: SpeakerArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut c = Conn::new(&args.connect).await?;
        match args.action {
            SpeakerAction::Get { speaker_id } => {
                let s = c
                    .client
                    .get_speaker(c.req(pb::GetSpeakerRequest { speaker_id }))
                    .await
                    .map_err(status)?;
                print_speaker(s.get_ref());
            }
            SpeakerAction::OptOut { speaker_id } => {
                let r = c
                    .client
                    .opt_out_speaker(c.req(pb::OptOutSpeakerRequest { speaker_id }))
                    .await
                    .map_err(status)?
                    .into_inner();
                if let Some(s) = &r.speaker {
                    print_speaker(s);
                }
            }
            SpeakerAction::Delete {
                speaker_id,
                keep_watchlist_copies,
            } => {
                let r = c
                    .client
                    .delete_speaker(c.req(pb::DeleteSpeakerRequest {
                        speaker_id,
                        keep_watchlist_copies,
                    }))
                    .await
                    .map_err(status)?
                    .into_inner();
                println!("{}", if r.deleted { "deleted" } else { "not found" });
                for copy in &r.watchlist_copies_removed {
                    println!(
                        "erased watchlist copy {}/{}",
                        copy.watchlist_id, copy.entry_id
                    );
                }
            }
        }
        Ok(())
    })
}

/// `voiceprint watchlist`.
pub fn run_watchlist(args: WatchlistArgs) -> anyhow::Result<()> {
    use pb::add_to_watchlist_request::Source;
    runtime()?.block_on(async {
        let mut c = Conn::new(&args.connect).await?;
        match args.action {
            WatchlistAction::Create {
                watchlist_id,
                description,
            } => {
                let w = c
                    .client
                    .create_watchlist(c.req(pb::CreateWatchlistRequest {
                        watchlist_id,
                        description,
                    }))
                    .await
                    .map_err(status)?;
                println!("created {}", w.get_ref().watchlist_id);
            }
            WatchlistAction::List => {
                let r = c
                    .client
                    .list_watchlists(c.req(pb::ListWatchlistsRequest {}))
                    .await
                    .map_err(status)?;
                for w in &r.get_ref().watchlists {
                    println!("{} ({} entries) {}", w.watchlist_id, w.size, w.description);
                }
            }
            WatchlistAction::Add {
                watchlist_id,
                entry_id,
                file,
                speaker,
                note,
            } => {
                let source = match (file, speaker) {
                    (Some(f), None) => Source::Audio(args.audio.load(&f)?),
                    (None, Some(s)) => Source::SpeakerId(s),
                    _ => anyhow::bail!("give exactly one of --file or --speaker"),
                };
                let r = c
                    .client
                    .add_to_watchlist(c.req(pb::AddToWatchlistRequest {
                        watchlist_id,
                        entry_id,
                        source: Some(source),
                        note,
                    }))
                    .await
                    .map_err(status)?
                    .into_inner();
                println!("added {} to {}", r.entry_id, r.watchlist_id);
                print_quality(r.quality.as_ref());
            }
            WatchlistAction::AddCluster {
                watchlist_id,
                clusters,
                cluster,
                manifest,
                entry_prefix,
                create,
                note,
            } => {
                let plan = ClusterPlan::load(&clusters, cluster, &manifest, &args.audio)?;
                if create {
                    let lists = c
                        .client
                        .list_watchlists(c.req(pb::ListWatchlistsRequest {}))
                        .await
                        .map_err(status)?
                        .into_inner();
                    if !lists
                        .watchlists
                        .iter()
                        .any(|w| w.watchlist_id == watchlist_id)
                    {
                        c.client
                            .create_watchlist(c.req(pb::CreateWatchlistRequest {
                                watchlist_id: watchlist_id.clone(),
                                description: format!(
                                    "recurring voices from {}",
                                    clusters.display()
                                ),
                            }))
                            .await
                            .map_err(status)?;
                        println!("created {watchlist_id}");
                    }
                }
                let prefix = entry_prefix.unwrap_or_else(|| format!("recurring-{cluster}"));
                let note = note.unwrap_or_else(|| plan.note.clone());
                let total = plan.audio.len();
                let mut added = 0usize;
                for (complaint_id, audio) in plan.audio {
                    let entry_id = format!("{prefix}-{complaint_id}");
                    let r = c
                        .client
                        .add_to_watchlist(c.req(pb::AddToWatchlistRequest {
                            watchlist_id: watchlist_id.clone(),
                            entry_id: entry_id.clone(),
                            source: Some(Source::Audio(audio)),
                            note: note.clone(),
                        }))
                        .await;
                    match r {
                        Ok(_) => {
                            added += 1;
                            println!("added {entry_id} to {watchlist_id}");
                        }
                        // The voice is still represented by the cluster's other complaints.
                        Err(e) => eprintln!("complaint {complaint_id}: not added: {}", status(e)),
                    }
                }
                anyhow::ensure!(
                    added > 0,
                    "no complaint of cluster {cluster} could be added to {watchlist_id}"
                );
                println!(
                    "{added} of {total} complaints of cluster {cluster} added to {watchlist_id}"
                );
            }
            WatchlistAction::Remove {
                watchlist_id,
                entry_id,
            } => {
                let r = c
                    .client
                    .remove_from_watchlist(c.req(pb::RemoveFromWatchlistRequest {
                        watchlist_id,
                        entry_id,
                    }))
                    .await
                    .map_err(status)?;
                println!(
                    "{}",
                    if r.get_ref().removed {
                        "removed"
                    } else {
                        "not found"
                    }
                );
            }
        }
        Ok(())
    })
}

/// The evidence of one recurring-voice cluster, ready to send.
struct ClusterPlan {
    /// `(complaint_id, audio)` per complaint of the cluster, in the cluster's order.
    audio: Vec<(String, pb::Audio)>,
    /// Default note: the customers and the confidence.
    note: String,
}

impl ClusterPlan {
    fn load(
        clusters: &Path,
        index: usize,
        manifest: &Path,
        defaults: &AudioArgs,
    ) -> anyhow::Result<Self> {
        let text =
            std::fs::read(clusters).with_context(|| format!("reading {}", clusters.display()))?;
        let all: Vec<voiceprint::recurring::SuspiciousCluster> = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a recurring clusters file", clusters.display()))?;
        let Some(found) = all.get(index) else {
            anyhow::bail!(
                "{} holds {} clusters; --cluster {index} does not exist",
                clusters.display(),
                all.len()
            );
        };
        let rows = super::manifest::read(manifest)?.rows;
        let by_id: std::collections::HashMap<&str, &super::manifest::ComplaintRow> =
            rows.iter().map(|r| (r.complaint_id.as_str(), r)).collect();
        let mut audio = Vec::with_capacity(found.complaint_ids.len());
        for id in &found.complaint_ids {
            let row = by_id.get(id.as_str()).with_context(|| {
                format!(
                    "complaint {id} of the cluster is not in {}",
                    manifest.display()
                )
            })?;
            let mut a = defaults.load(&row.audio)?;
            if row.channel != voiceprint::audio::ChannelSelect::Default {
                let (channel, channel_index) = super::manifest::channel_pb(row.channel)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("complaint {id}"))?;
                a.channel = channel as i32;
                a.channel_index = channel_index;
            }
            audio.push((id.clone(), a));
        }
        let mut note = format!(
            "recurring voice, confidence {:.2}, customers {}",
            found.confidence,
            found.customer_ids.join(",")
        );
        if note.len() > 1024 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
            note.push('…');
        }
        Ok(Self { audio, note })
    }
}
