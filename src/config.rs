//! Server configuration: defaults that run out of the box, overridden by a TOML file, then by
//! environment variables, then by command-line flags (the CLI applies the flags).
//!
//! | setting | file key | environment | default |
//! |---|---|---|---|
//! | listen address | `listen` | `VOICEPRINT_LISTEN` | `127.0.0.1:50051` |
//! | data directory | `data_dir` | `VOICEPRINT_DATA_DIR` | `./voiceprint-data` |
//! | tokens → tenants | `[[tenants]] name, tokens` | `VOICEPRINT_TOKENS=tenant:token,...` | none (loopback only) |
//! | master key file | `master_key_file` | `VOICEPRINT_MASTER_KEY` (the key itself) | `<data_dir>/master.key` |
//! | metrics | `metrics_listen` | `VOICEPRINT_METRICS_LISTEN` | off |
//! | scorer calibration | `scoring_dir` | `VOICEPRINT_SCORING_DIR` | built in, by channel pairing |
//! | channel assumed for voiceprints of unknown channel | `enrolment_channel` | `VOICEPRINT_ENROLMENT_CHANNEL` | `telephone` |
//! | TLS | `[tls] cert, key, client_ca` | | off |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The configuration file is not valid TOML for this schema.
    #[error("invalid configuration file {0}: {1}")]
    Parse(PathBuf, String),
    /// An environment variable has an invalid value.
    #[error("invalid environment variable {0}: {1}")]
    Env(&'static str, String),
    /// The combination of settings is not allowed.
    #[error("{0}")]
    Invalid(String),
}

/// A tenant and the bearer tokens that act for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant name (scopes every speaker and watchlist).
    pub name: String,
    /// Bearer tokens mapped to this tenant.
    pub tokens: Vec<String>,
}

/// TLS settings (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The channel assumed for comparisons whose channels are not both known (voiceprints stored
/// before channels were recorded, linear-PCM streams), which picks the default calibration.
/// Comparisons of known channels use the built-in calibration of their pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrolmentChannel {
    /// Enrolled from telephone calls (8 kHz G.711): the call-centre default.
    #[default]
    Telephone,
    /// Enrolled from wideband (16 kHz) audio.
    Wideband,
}

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the store (and of the generated master key).
    pub data_dir: PathBuf,
    /// Allow binding a non-loopback address without tokens.
    pub insecure: bool,
    /// Token → tenant map; empty = single `default` tenant, loopback only.
    pub tenants: Vec<TenantConfig>,
    /// File holding the master key (hex or base64); `VOICEPRINT_MASTER_KEY` wins over it.
    pub master_key_file: Option<PathBuf>,
    /// TLS (optional).
    pub tls: Option<TlsConfig>,
    /// Prometheus exporter address (off when absent).
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Net speech needed for a complete enrolment, seconds.
    pub required_speech_seconds: f64,
    /// A voiceprint unused this long (days) expires and is erased.
    pub expiry_days: u32,
    /// Target false-accept rate when a request gives none.
    pub default_target_far: f64,
    /// Largest gRPC message accepted, bytes.
    pub max_message_bytes: usize,
    /// Longest audio accepted per piece, seconds.
    pub max_audio_seconds: f64,
    /// Audio pieces analysed at once (0 = number of CPUs).
    pub workers: usize,
    /// Requests allowed to wait for a worker; beyond it requests are shed with UNAVAILABLE.
    pub queue_depth: usize,
    /// Most threads one analysis's embedding uses; it takes the cores idle when it starts, up to
    /// this (0 = number of CPUs: a lone request uses every core, each one under full load one).
    pub embed_threads: usize,
    /// Directory with the scorer's `calibration.json` (and optionally `cohort.npy`) to use instead
    /// of the built-in development-set calibration, e.g. one fitted with `voiceprint calibrate` on
    /// the deployment's own calls, or the shipped `data/scoring/telephone-enrolment`.
    pub scoring_dir: Option<PathBuf>,
    /// Without `scoring_dir`, every comparison whose two channels are known (detected at
    /// enrolment and verification: G.711 or telephone-band audio is `telephone`) uses the built-in
    /// calibration of its pairing. This picks the default for the rest: `telephone` (voiceprints
    /// enrolled from calls, the call-centre case) or `wideband` (the calibration pooled over
    /// wideband enrolments verified on wideband audio and on calls).
    pub enrolment_channel: EnrolmentChannel,
    /// Most candidates an Identify returns.
    pub max_top_k: u32,
    /// Most complaints in one BatchMatch request (the request's total size is bounded by
    /// `max_message_bytes`).
    pub max_batch_complaints: usize,
    /// Live verification (`StreamVerify`).
    pub stream: StreamSettings,
    /// Replay detection at verification.
    pub replay: ReplaySettings,
    /// Recurring-voice tracking (`TrackComplaint`).
    pub recurring: RecurringSettings,
}

/// Settings of recurring-voice tracking (`[recurring]` in the config file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecurringSettings {
    /// Cosine at which a complaint joins an existing voice (0.75: measured on the dev set's µ-law
    /// copies, see docs/workflows.md; the same default as `voiceprint recurring`).
    pub threshold: f64,
    /// Distinct customer ids that make a voice suspicious (at least 2).
    pub min_customers: usize,
}

impl Default for RecurringSettings {
    fn default() -> Self {
        Self {
            threshold: 0.75,
            min_customers: 2,
        }
    }
}

/// Settings of live verification streams (`[stream]` in the config file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Net speech before the first running decision, seconds.
    pub first_decision_seconds: f64,
    /// New net speech between running decisions, seconds.
    pub decision_every_seconds: f64,
    /// Net speech per embedded segment, seconds.
    pub segment_seconds: f64,
    /// A stream with no message for this long is closed, seconds.
    pub idle_timeout_seconds: f64,
    /// Longest stream, seconds of audio.
    pub max_seconds: f64,
    /// Largest audio chunk, bytes.
    pub max_chunk_bytes: usize,
    /// Streams open at once; more are refused with UNAVAILABLE.
    pub max_streams: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            first_decision_seconds: 3.0,
            decision_every_seconds: 2.0,
            segment_seconds: 6.0,
            idle_timeout_seconds: 10.0,
            max_seconds: 7200.0,
            max_chunk_bytes: 1 << 20,
            max_streams: 256,
        }
    }
}

/// Settings of replay detection (`[replay]` in the config file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaySettings {
    /// Check verification audio against the tenant's recent verification audio.
    pub enabled: bool,
    /// Spoof risk at or above which a verification is rejected as a replay.
    pub threshold: f64,
    /// Fingerprints kept per tenant (oldest evicted first).
    pub capacity: usize,
    /// Fingerprints older than this are forgotten, days.
    pub retention_days: u32,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.5,
            capacity: 10_000,
            retention_days: 90,
        }
    }
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("voiceprint-data"),
            insecure: false,
            tenants: Vec::new(),
            master_key_file: None,
            tls: None,
            metrics_listen: None,
            log_format: LogFormat::Text,
            required_speech_seconds: 20.0,
            expiry_days: 3 * 365,
            default_target_far: 0.01,
            max_message_bytes: 32 << 20,
            max_audio_seconds: 600.0,
            workers: 0,
            queue_depth: 64,
            embed_threads: 0,
            scoring_dir: None,
            enrolment_channel: EnrolmentChannel::Telephone,
            max_top_k: 100,
            stream: StreamSettings::default(),
            replay: ReplaySettings::default(),
            recurring: RecurringSettings::default(),
            max_batch_complaints: 256,
        }
    }
}

/// Name of the tenant used when no tokens are configured.
pub const DEFAULT_TENANT: &str = "default";

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Parses a TOML file (missing keys take their defaults).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e.to_string()))
    }

    /// Applies `VOICEPRINT_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("VOICEPRINT_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|e| ConfigError::Env("VOICEPRINT_LISTEN", format!("{e}")))?;
        }
        if let Some(v) = get("VOICEPRINT_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("VOICEPRINT_SCORING_DIR") {
            self.scoring_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("VOICEPRINT_ENROLMENT_CHANNEL") {
            self.enrolment_channel = match v.trim() {
                "telephone" => EnrolmentChannel::Telephone,
                "wideband" => EnrolmentChannel::Wideband,
                other => {
                    return Err(ConfigError::Env(
                        "VOICEPRINT_ENROLMENT_CHANNEL",
                        format!("{other:?} is neither \"telephone\" nor \"wideband\""),
                    ));
                }
            };
        }
        if let Some(v) = get("VOICEPRINT_METRICS_LISTEN") {
            self.metrics_listen = Some(
                v.parse()
                    .map_err(|e| ConfigError::Env("VOICEPRINT_METRICS_LISTEN", format!("{e}")))?,
            );
        }
        if let Some(v) = get("VOICEPRINT_TOKENS") {
            self.tenants.extend(parse_tokens(&v)?);
        }
        if let Some(v) = get("VOICEPRINT_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(ConfigError::Env(
                        "VOICEPRINT_LOG_FORMAT",
                        format!("{other:?} is not text|json"),
                    ));
                }
            };
        }
        Ok(())
    }

    /// Checks the settings together: auth versus binding, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tenants.is_empty() && !self.listen.ip().is_loopback() && !self.insecure {
            return Err(ConfigError::Invalid(format!(
                "no tokens configured: refusing to listen on non-loopback {} without --insecure \
                 (configure [[tenants]] or VOICEPRINT_TOKENS)",
                self.listen
            )));
        }
        for t in &self.tenants {
            if t.name.is_empty() || t.name.contains('\0') || t.tokens.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid(format!(
                    "tenant {:?}: empty name or token",
                    t.name
                )));
            }
        }
        if !(self.required_speech_seconds > 0.0 && self.required_speech_seconds < 3600.0) {
            return Err(ConfigError::Invalid(
                "required_speech_seconds must be in (0, 3600)".into(),
            ));
        }
        if !(self.default_target_far > 0.0 && self.default_target_far <= 0.5) {
            return Err(ConfigError::Invalid(
                "default_target_far must be in (0, 0.5]".into(),
            ));
        }
        if self.max_batch_complaints == 0 {
            return Err(ConfigError::Invalid(
                "max_batch_complaints must be at least 1".into(),
            ));
        }
        if self.max_message_bytes < 1024 || self.max_audio_seconds <= 0.0 {
            return Err(ConfigError::Invalid(
                "max_message_bytes / max_audio_seconds too small".into(),
            ));
        }
        let st = &self.stream;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !(positive(st.first_decision_seconds)
            && positive(st.decision_every_seconds)
            && positive(st.segment_seconds)
            && positive(st.idle_timeout_seconds)
            && positive(st.max_seconds)
            && st.max_chunk_bytes > 0
            && st.max_streams > 0)
        {
            return Err(ConfigError::Invalid(
                "[stream] settings must be positive".into(),
            ));
        }
        if !((-1.0..=1.0).contains(&self.recurring.threshold) && self.recurring.min_customers >= 2)
        {
            return Err(ConfigError::Invalid(
                "[recurring] threshold must be a cosine in [-1, 1], min_customers at least 2"
                    .into(),
            ));
        }
        if !(self.replay.threshold > 0.0 && self.replay.threshold <= 1.0) {
            return Err(ConfigError::Invalid(
                "[replay] threshold must be in (0, 1]".into(),
            ));
        }
        Ok(())
    }

    /// The master key file actually used.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// Number of analysis workers actually used.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        }
    }
}

/// Parses `tenant1:token1,tenant2:token2` (a tenant may repeat to get several tokens).
pub fn parse_tokens(spec: &str) -> Result<Vec<TenantConfig>, ConfigError> {
    let mut out: Vec<TenantConfig> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, token)) = item.split_once(':') else {
            return Err(ConfigError::Env(
                "VOICEPRINT_TOKENS",
                "expected tenant:token[,tenant:token...]".into(),
            ));
        };
        if name.is_empty() || token.is_empty() {
            return Err(ConfigError::Env(
                "VOICEPRINT_TOKENS",
                "empty tenant or token".into(),
            ));
        }
        match out.iter_mut().find(|t| t.name == name) {
            Some(t) => t.tokens.push(token.to_string()),
            None => out.push(TenantConfig {
                name: name.to_string(),
                tokens: vec![token.to_string()],
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn file_env_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "listen = \"0.0.0.0:9000\"\nrequired_speech_seconds = 30.0\n[[tenants]]\nname = \"bank\"\ntokens = [\"s3cret\"]\n",
        )
        .unwrap();
        let mut c = Config::from_file(&p).unwrap();
        assert_eq!(c.required_speech_seconds, 30.0);
        assert_eq!(c.tenants[0].name, "bank");
        c.validate().unwrap();
        c.apply_env(|k| (k == "VOICEPRINT_TOKENS").then(|| "a:x, a:y,b:z".to_string()))
            .unwrap();
        assert_eq!(c.tenants.len(), 3);
        assert_eq!(c.tenants[1].tokens, vec!["x", "y"]);
        assert_eq!(c.scoring_dir, None);
        c.apply_env(|k| (k == "VOICEPRINT_SCORING_DIR").then(|| "/srv/cal".to_string()))
            .unwrap();
        assert_eq!(c.scoring_dir, Some(PathBuf::from("/srv/cal")));
        assert_eq!(c.enrolment_channel, EnrolmentChannel::Telephone);
        c.apply_env(|k| (k == "VOICEPRINT_ENROLMENT_CHANNEL").then(|| "wideband".to_string()))
            .unwrap();
        assert_eq!(c.enrolment_channel, EnrolmentChannel::Wideband);
        assert!(
            c.apply_env(|k| (k == "VOICEPRINT_ENROLMENT_CHANNEL").then(|| "radio".to_string()))
                .is_err()
        );
        let mut open = Config {
            listen: "0.0.0.0:1".parse().unwrap(),
            ..Config::default()
        };
        assert!(open.validate().is_err());
        open.insecure = true;
        open.validate().unwrap();
        std::fs::write(&p, "lisen = 1").unwrap();
        assert!(Config::from_file(&p).is_err());
        assert!(parse_tokens("nocolon").is_err());
    }
}
