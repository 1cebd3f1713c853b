//! The complaint manifest read by `batch` and `recurring`: a CSV file with the header
//! `complaint_id,customer_id,audio[,channel]`, audio paths relative to the manifest's folder and
//! `channel` one of `default`, `mix`, `left`, `right` or a channel index.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use voiceprint::audio::ChannelSelect;
use voiceprint::proto::v1 as pb;

/// One usable row.
pub struct ComplaintRow {
    /// 1-based line of the row in the manifest.
    pub line: u64,
    /// Identifier of the complaint.
    pub complaint_id: String,
    /// The customer the complaint was made for.
    pub customer_id: String,
    /// The audio file, resolved against the manifest's folder.
    pub audio: PathBuf,
    /// Channel of the complainant in the recording.
    pub channel: ChannelSelect,
}

/// A row that could not be used, with what is known of it.
pub struct BadRow {
    /// 1-based line of the row in the manifest.
    pub line: u64,
    /// The complaint id when the row has one (may be empty).
    pub complaint_id: String,
    /// The customer id when the row has one (may be empty).
    pub customer_id: String,
    /// What is wrong with it.
    pub message: String,
}

impl BadRow {
    /// One line for the report: names the complaint when the row has an id, else the line.
    pub fn describe(&self) -> String {
        if self.complaint_id.is_empty() {
            format!("manifest row {}: skipped: {}", self.line, self.message)
        } else {
            format!("complaint {}: skipped: {}", self.complaint_id, self.message)
        }
    }
}

/// The rows of a manifest, usable and not.
pub struct Manifest {
    /// Rows that name a complaint, a customer, an audio file and a valid channel.
    pub rows: Vec<ComplaintRow>,
    /// Rows that do not, in file order.
    pub bad: Vec<BadRow>,
}

#[derive(Deserialize)]
struct Raw {
    complaint_id: String,
    customer_id: String,
    audio: String,
    #[serde(default)]
    channel: Option<String>,
}

/// Reads the manifest. Only an unreadable file or a header without the required columns is an
/// error; a bad row is returned in [`Manifest::bad`].
pub fn read(path: &Path) -> anyhow::Result<Manifest> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .clone();
    for column in ["complaint_id", "customer_id", "audio"] {
        anyhow::ensure!(
            headers.iter().any(|h| h == column),
            "manifest {} has no {column:?} column (expected complaint_id,customer_id,audio[,channel])",
            path.display()
        );
    }
    let field = |record: &csv::StringRecord, name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .and_then(|i| record.get(i))
            .unwrap_or_default()
            .to_string()
    };
    let mut manifest = Manifest {
        rows: Vec::new(),
        bad: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                manifest.bad.push(BadRow {
                    line,
                    complaint_id: String::new(),
                    customer_id: String::new(),
                    message: e.to_string(),
                });
                continue;
            }
        }
        let line = record.position().map_or(line, csv::Position::line);
        let bad = |message: String| BadRow {
            line,
            complaint_id: field(&record, "complaint_id"),
            customer_id: field(&record, "customer_id"),
            message,
        };
        let raw: Raw = match record.deserialize(Some(&headers)) {
            Ok(raw) => raw,
            Err(e) => {
                manifest.bad.push(bad(e.to_string()));
                continue;
            }
        };
        let missing = [
            ("complaint_id", &raw.complaint_id),
            ("customer_id", &raw.customer_id),
            ("audio", &raw.audio),
        ]
        .into_iter()
        .find(|(_, v)| v.is_empty());
        if let Some((name, _)) = missing {
            manifest.bad.push(bad(format!("empty {name}")));
            continue;
        }
        let channel = match raw.channel.as_deref().filter(|c| !c.is_empty()) {
            None => ChannelSelect::Default,
            Some(c) => match c.parse::<ChannelSelect>() {
                Ok(c) => c,
                Err(e) => {
                    manifest.bad.push(bad(e.to_string()));
                    continue;
                }
            },
        };
        manifest.rows.push(ComplaintRow {
            line,
            audio: base.join(&raw.audio),
            complaint_id: raw.complaint_id,
            customer_id: raw.customer_id,
            channel,
        });
    }
    Ok(manifest)
}

/// The proto form of a row's channel selection (`Err` names an index too large for the proto).
pub fn channel_pb(channel: ChannelSelect) -> Result<(pb::Channel, u32), String> {
    Ok(match channel {
        ChannelSelect::Default => (pb::Channel::Default, 0),
        ChannelSelect::Mix => (pb::Channel::Mix, 0),
        ChannelSelect::Left => (pb::Channel::Left, 0),
        ChannelSelect::Right => (pb::Channel::Right, 0),
        ChannelSelect::Index(i) => (
            pb::Channel::Index,
            u32::try_from(i).map_err(|_| format!("channel index {i} is too large"))?,
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(
            &path,
            "complaint_id,customer_id,audio,channel\n\
             c1,cust-A,a.wav,\n\
             c2,cust-B,/abs/b.wav,left\n\
             c3,cust-C,c.wav,sideways\n\
             ,cust-D,d.wav,\n\
             c5,cust-E\n\
             \"c6\",\"cust-F\",\"f g.wav\",1\n",
        )
        .unwrap();
        let m = read(&path).unwrap();
        let ids: Vec<_> = m.rows.iter().map(|r| r.complaint_id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2", "c6"]);
        assert_eq!(m.rows[0].audio, dir.path().join("a.wav"));
        assert_eq!(m.rows[0].line, 2);
        assert_eq!(m.rows[1].audio, PathBuf::from("/abs/b.wav"));
        assert_eq!(m.rows[1].channel, ChannelSelect::Left);
        assert_eq!(m.rows[2].channel, ChannelSelect::Index(1));
        assert_eq!(m.rows[2].audio, dir.path().join("f g.wav"));
        let bad: Vec<_> = m
            .bad
            .iter()
            .map(|b| (b.line, b.complaint_id.as_str()))
            .collect();
        assert_eq!(bad, [(4, "c3"), (5, ""), (6, "c5")]);
        assert!(m.bad[0].describe().starts_with("complaint c3: skipped"));
        assert!(m.bad[1].describe().starts_with("manifest row 5: skipped"));
        assert_eq!(m.bad[1].customer_id, "cust-D");

        std::fs::write(&path, "id,audio\nx,y\n").unwrap();
        assert!(read(&path).is_err());
        assert!(read(&dir.path().join("missing.csv")).is_err());
    }
}
