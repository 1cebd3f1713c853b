//! Minimal NumPy `.npy` reading and writing (float32, little-endian, C order).
//! (Temporary: replaced by the features branch's module.)

/// Errors reading `.npy` data.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The bytes are not a float32 `.npy` array.
    #[error("invalid .npy data: {0}")]
    Invalid(String),
}

/// An array read from `.npy`.
pub struct NpyArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f32>,
}

/// Reads a float32 `.npy` from bytes.
pub fn read_npy_bytes(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let bad = |m: &str| NpyError::Invalid(m.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("magic"));
    }
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        if bytes.len() < 12 {
            return Err(bad("header"));
        }
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| bad("header length"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header utf8"))?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(bad(
            "only little-endian float32 C-order arrays are supported",
        ));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("shape"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("shape value")))
        .collect::<Result<Vec<_>, _>>()?;
    let body = &bytes[start + hlen..];
    let n: usize = shape.iter().product();
    if body.len() != n * 4 {
        return Err(bad("data length does not match shape"));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(NpyArray { shape, data })
}
