//! ITU-T G.711 µ-law and A-law companding.
//!
//! Decoding is a lookup in a 256-entry table built at compile time from the ITU-T G.711
//! expansion rules (the same values as the reference `g711.c` of Sun Microsystems, sox and
//! ffmpeg). Encoding rounds the input to the nearest 14-bit (µ-law) or 13-bit (A-law) step and
//! then applies the ITU-T segment rules, exactly as sox does, so
//! `linear_to_ulaw(ulaw_to_linear(c)) == c` for every code except µ-law `0x7F` (negative zero,
//! which encodes back as positive zero `0xFF`).

/// µ-law bias added before the segment search (ITU-T G.711, 0x84 = 132).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude the µ-law encoder represents, in its 14-bit domain.
const ULAW_CLIP: i32 = 8159;

const fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= ((u & 0x70) >> 4) as i32;
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

const fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

const fn build_table(ulaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if ulaw {
            ulaw_decode(i as u8)
        } else {
            alaw_decode(i as u8)
        };
        i += 1;
    }
    table
}

/// µ-law code → linear PCM16.
pub(crate) static ULAW_TABLE: [i16; 256] = build_table(true);
/// A-law code → linear PCM16.
pub(crate) static ALAW_TABLE: [i16; 256] = build_table(false);

/// µ-law code to linear 16-bit PCM (ITU-T G.711, table lookup).
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// A-law code to linear 16-bit PCM (ITU-T G.711, table lookup).
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

/// Index of the first segment end that is ≥ `value`, or 8 when it is above them all.
#[inline]
fn segment(value: i32, ends: &[i32; 8]) -> i32 {
    let mut seg = 0;
    while seg < 8 && value > ends[seg as usize] {
        seg += 1;
    }
    seg
}

/// Linear 16-bit PCM to a µ-law code (ITU-T G.711; rounded to 14 bits first, as sox does).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut value = ((i32::from(sample) + 2) >> 2).min(0x1FFF);
    let mask: u8 = if value < 0 {
        value = -value;
        0x7F
    } else {
        0xFF
    };
    value = value.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(value, &ENDS);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let code = (seg << 4) | ((value >> (seg + 1)) & 0x0F);
    (code as u8) ^ mask
}

/// Linear 16-bit PCM to an A-law code (ITU-T G.711; rounded to 13 bits first, as sox does).
pub fn linear_to_alaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut value = ((i32::from(sample) + 4) >> 3).min(0xFFF);
    let mask: u8 = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    let seg = segment(value, &ENDS);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mantissa = if seg < 2 {
        (value >> 1) & 0x0F
    } else {
        (value >> seg) & 0x0F
    };
    (((seg << 4) | mantissa) as u8) ^ mask
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn golden_tables() -> Vec<(u8, i16, i16)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/golden/g711_tables.csv"
        );
        let mut reader = csv::Reader::from_path(path).unwrap();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (
                    r[0].parse().unwrap(),
                    r[1].parse().unwrap(),
                    r[2].parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn tables_match_golden_csv_for_all_256_codes() {
        let rows = golden_tables();
        assert_eq!(rows.len(), 256);
        for (i, (code, ulaw, alaw)) in rows.into_iter().enumerate() {
            assert_eq!(usize::from(code), i);
            assert_eq!(ulaw_to_linear(code), ulaw, "u-law code {code}");
            assert_eq!(alaw_to_linear(code), alaw, "A-law code {code}");
        }
    }

    #[test]
    fn known_itu_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn encode_inverts_decode() {
        for code in 0..=255u8 {
            let expected_u = if code == 0x7F { 0xFF } else { code };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(code)), expected_u, "u {code}");
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "A {code}");
        }
    }

    #[test]
    fn encode_is_monotonic_and_decodes_near_input() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            // Quantisation error is bounded by half the largest step (1024 for u-law, 512 for A-law) plus truncation.
            assert!((i32::from(u) - i32::from(s)).abs() <= 1100, "u {s} -> {u}");
            assert!((i32::from(a) - i32::from(s)).abs() <= 1100, "A {s} -> {a}");
        }
    }

    /// sox encoded `d_8k_pcm16.wav` into the headerless G.711 files; our encoder must agree byte for byte.
    #[test]
    fn encoder_matches_sox_on_golden_speech() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden/inputs/");
        let wav = std::fs::read(format!("{dir}d_8k_pcm16.wav")).unwrap();
        let pcm: Vec<i16> = wav[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let ulaw = std::fs::read(format!("{dir}d_8k.ulaw")).unwrap();
        let alaw = std::fs::read(format!("{dir}d_8k.alaw")).unwrap();
        assert_eq!(pcm.len(), ulaw.len());
        assert_eq!(pcm.len(), alaw.len());
        for (i, &s) in pcm.iter().enumerate() {
            assert_eq!(linear_to_ulaw(s), ulaw[i], "u-law sample {i} ({s})");
            assert_eq!(linear_to_alaw(s), alaw[i], "A-law sample {i} ({s})");
        }
    }
}
