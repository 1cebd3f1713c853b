//! Minimal NumPy `.npy` reading and writing for `float32` arrays (format versions 1.0–3.0).
//!
//! Writing produces version 1.0, little-endian `<f4`, C order. Reading accepts `<f4` and `<f8`
//! (converted to `f32`), C or Fortran order (Fortran data is returned in C order), any rank.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::features::FeatureMatrix;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Upper bound on the header length we accept (NumPy itself limits headers to 10 kB by default).
const MAX_HEADER: usize = 1 << 16;

/// Errors reading or writing `.npy` data.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("npy I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The data does not start with the `.npy` magic string.
    #[error("not an .npy file (bad magic)")]
    BadMagic,
    /// The format version is not 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {0}.{1}")]
    UnsupportedVersion(u8, u8),
    /// The header dictionary is malformed or truncated.
    #[error("malformed .npy header: {0}")]
    BadHeader(String),
    /// The element type is not little-endian `float32` or `float64`.
    #[error("unsupported .npy dtype {0:?} (expected '<f4' or '<f8')")]
    UnsupportedDtype(String),
    /// The data section is shorter or longer than the shape says.
    #[error("npy data has {actual} bytes, shape needs {expected}")]
    DataLength {
        /// Bytes required by the shape and dtype.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
}

/// Writes `m` as a `(num_frames, dim)` `<f4` array.
pub fn write_f32_matrix(path: impl AsRef<Path>, m: &FeatureMatrix) -> Result<(), NpyError> {
    write_f32(path, &[m.num_frames(), m.dim()], m.as_slice())
}

/// Writes `data` as a `<f4` array of the given shape (C order). `data.len()` must equal the
/// product of `shape`.
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let mut w = BufWriter::with_capacity(1 << 16, File::create(path)?);
    write_f32_to(&mut w, shape, data)?;
    w.flush()?;
    Ok(())
}

/// Writes a `<f4` `.npy` stream of the given shape to any writer.
pub fn write_f32_to(w: &mut impl Write, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let expected = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(NpyError::DataLength {
            expected: expected.unwrap_or(usize::MAX).saturating_mul(4),
            actual: data.len() * 4,
        });
    }
    w.write_all(&header_bytes(shape))?;
    let mut buf = Vec::with_capacity(1 << 15);
    for chunk in data.chunks(1 << 13) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // magic(6) + version(2) + len(2) + dict + '\n' must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(64) - unpadded,
    ));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Reads a `.npy` file: its shape and its values as `f32` in C order.
pub fn read_f32(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    read_npy_bytes(&bytes)
}

/// Reads a `.npy` file into a [`FeatureMatrix`]; the array must be 2-D.
pub fn read_f32_matrix(path: impl AsRef<Path>) -> Result<FeatureMatrix, NpyError> {
    let (shape, data) = read_f32(path)?;
    let [_, dim] = shape[..] else {
        return Err(NpyError::BadHeader(format!(
            "expected a 2-D array, shape is {shape:?}"
        )));
    };
    FeatureMatrix::new(data, dim).map_err(|e| NpyError::BadHeader(e.to_string()))
}

/// Parses an in-memory `.npy` (e.g. a member of an `.npz`): shape and `f32` values in C order.
pub fn read_npy_bytes(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            let Some(b) = bytes.get(8..12) else {
                return Err(NpyError::BadHeader("truncated length".into()));
            };
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => return Err(NpyError::UnsupportedVersion(major, minor)),
    };
    if header_len > MAX_HEADER {
        return Err(NpyError::BadHeader(format!("header of {header_len} bytes")));
    }
    let Some(header) = bytes.get(start..start + header_len) else {
        return Err(NpyError::BadHeader("truncated header".into()));
    };
    let header = std::str::from_utf8(header)
        .map_err(|_| NpyError::BadHeader("header is not text".into()))?;
    let descr = dict_value(header, "descr")?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let elem = match descr {
        "<f4" | "=f4" | "f4" => 4,
        "<f8" | "=f8" | "f8" => 8,
        other => return Err(NpyError::UnsupportedDtype(other.to_string())),
    };
    let fortran = match dict_value(header, "fortran_order")?.trim() {
        "False" => false,
        "True" => true,
        other => return Err(NpyError::BadHeader(format!("fortran_order {other:?}"))),
    };
    let shape = parse_shape(dict_value(header, "shape")?)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| NpyError::BadHeader("shape overflows".into()))?;
    let data = &bytes[start + header_len..];
    let expected = count
        .checked_mul(elem)
        .ok_or_else(|| NpyError::BadHeader("shape overflows".into()))?;
    if data.len() != expected {
        return Err(NpyError::DataLength {
            expected,
            actual: data.len(),
        });
    }
    let mut values: Vec<f32> = if elem == 4 {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect()
    };
    if fortran && shape.len() > 1 {
        values = fortran_to_c(&values, &shape);
    }
    Ok((shape, values))
}

/// The raw text of `key`'s value in the header dict (up to the next top-level comma or brace).
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let missing = || NpyError::BadHeader(format!("no '{key}' key"));
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let pos = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|p| p + q.len()))
        .ok_or_else(missing)?;
    let rest = header[pos..].trim_start();
    let rest = rest.strip_prefix(':').ok_or_else(missing)?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Ok(&rest[..i]),
            _ => {}
        }
    }
    Err(missing())
}

fn parse_shape(s: &str) -> Result<Vec<usize>, NpyError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| NpyError::BadHeader(format!("shape {s:?}")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| NpyError::BadHeader(format!("shape dimension {d:?}")))
        })
        .collect()
}

fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = values.len();
    let mut out = vec![0.0; n];
    // C strides and Fortran strides of the same shape.
    let mut c_strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        c_strides[i] = c_strides[i + 1] * shape[i + 1];
    }
    for (f_index, &v) in values.iter().enumerate() {
        let mut rem = f_index;
        let mut c_index = 0;
        for (d, &dim) in shape.iter().enumerate() {
            let coord = rem % dim.max(1);
            rem /= dim.max(1);
            c_index += coord * c_strides[d];
        }
        out[c_index] = v;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        let m = FeatureMatrix::new((0..12).map(|x| x as f32 * 0.5 - 1.0).collect(), 4).unwrap();
        write_f32_matrix(&path, &m).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + header_len) % 64, 0);
        let (shape, data) = read_f32(&path).unwrap();
        assert_eq!(shape, vec![3, 4]);
        assert_eq!(data, m.as_slice());
        assert_eq!(read_f32_matrix(&path).unwrap(), m);
    }

    #[test]
    fn reads_golden_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/golden/d_8k_pcm16/fbank23.npy"
        );
        let (shape, data) = read_f32(path).unwrap();
        assert_eq!(shape, vec![237, 23]);
        assert_eq!(data.len(), 237 * 23);
        assert!(data.iter().all(|x| x.is_finite()));
        let (shape, _) = read_f32(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/golden/a_espeak_en_us/embedding.npy"
        ))
        .unwrap();
        assert_eq!(shape, vec![192]);
    }

    #[test]
    fn fortran_order_and_f8() {
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        // Fortran order of [[0,1,2],[3,4,5]] is 0,3,1,4,2,5.
        for v in [0.0f64, 3.0, 1.0, 4.0, 2.0, 5.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let (shape, data) = read_npy_bytes(&bytes).unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn rejects_hostile_input() {
        assert!(matches!(read_npy_bytes(b"hello"), Err(NpyError::BadMagic)));
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0, 200, 0]);
        assert!(matches!(
            read_npy_bytes(&bytes),
            Err(NpyError::BadHeader(_))
        ));
        let header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        assert!(read_npy_bytes(&bytes).is_err());
        let header = "{'descr': '<i2', 'fortran_order': False, 'shape': (1,), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0, 0]);
        assert!(matches!(
            read_npy_bytes(&bytes),
            Err(NpyError::UnsupportedDtype(_))
        ));
    }
}
