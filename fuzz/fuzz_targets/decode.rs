//! Fuzzes `voiceprint::audio::decode` (containers and headerless input) and the raw stream
//! decoder. The first byte picks the mode; the rest is the input. Any panic, hang or broken
//! invariant is a bug: hostile input must end in a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voiceprint::audio::{ChannelSelect, DecodeOptions, Encoding, Limits, RawStreamDecoder, decode};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let channel = match mode >> 5 {
        0 => ChannelSelect::Default,
        1 => ChannelSelect::Mix,
        2 => ChannelSelect::Left,
        3 => ChannelSelect::Right,
        n => ChannelSelect::Index(usize::from(n - 4)),
    };
    let encoding = match mode & 3 {
        0 => Encoding::Auto,
        1 => Encoding::Pcm16Le,
        2 => Encoding::Mulaw,
        _ => Encoding::Alaw,
    };
    let channels = usize::from((mode >> 2) & 3) + 1;
    let limits = Limits { max_bytes: 1 << 20, max_seconds: 60.0, max_channels: 8 };
    let opts = DecodeOptions { encoding, sample_rate: Some(8000), channels, channel, limits };
    if let Ok(d) = decode(input, &opts) {
        let rate = d.waveform.sample_rate;
        assert!((4000..=192_000).contains(&rate));
        assert!(d.waveform.samples.len() as f64 <= 60.0 * f64::from(rate));
        assert!(!d.waveform.samples.is_empty());
        assert!(d.info.channels >= 1 && d.info.channels <= 8);
    }
    if encoding != Encoding::Auto
        && let Ok(mut stream) = RawStreamDecoder::new(encoding, channels, channel)
    {
        let mut out = Vec::new();
        for chunk in input.chunks(usize::from(mode % 7) + 1) {
            stream.push(chunk, &mut out);
        }
        let frame = encoding.bytes_per_sample().unwrap_or(1) * channels;
        assert_eq!(out.len(), input.len() / frame);
        assert_eq!(stream.pending_bytes(), input.len() % frame);
    }
});
