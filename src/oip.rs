//! The Open Inference Protocol v2 (KServe's "V2 inference protocol", served by Triton, Seldon
//! MLServer, KServe and `modeldeck serve`): tensors as the REST API writes them, shared by the
//! client ([`crate::remote`]) and the server ([`crate::serve`]).
//!
//! A tensor is `{name, shape, datatype, data}` with `data` in row-major order, flat or nested.
//! Triton's binary tensor data extension (the raw bytes after the JSON header, announced by the
//! `Inference-Header-Content-Length` header) is what `tritonclient` sends by default; the server
//! reads and writes it ([`binary`]).

use serde_json::Value;

/// The datatypes of the protocol ("BOOL", "UINT8", ..., "FP32", "FP64", "BYTES").
pub const NUMERIC: [&str; 13] =
    ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16"];

/// Bytes per element of a fixed-size datatype (BYTES has none).
pub fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" | "FP16" | "BF16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        _ => return None,
    })
}

/// The number of elements a shape holds (`None` for a negative or overflowing dimension).
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)))
}

/// A shape as the protocol writes it, `[2, 10]`.
pub fn shape_text(shape: &[i64]) -> String {
    format!("[{}]", shape.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
}

/// Flattens `data` (flat or nested arrays, row-major) into numbers. Booleans count as 0/1.
pub fn numbers(data: &Value) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f64>) -> Result<(), String> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|i| walk(i, out)),
            Value::Number(n) => n.as_f64().map(|x| out.push(x)).ok_or_else(|| format!("`{n}` is not a number")),
            Value::Bool(b) => {
                out.push(if *b { 1.0 } else { 0.0 });
                Ok(())
            }
            Value::String(s) => match s.as_str() {
                // How Python's json writes non-finite floats.
                "NaN" | "nan" => {
                    out.push(f64::NAN);
                    Ok(())
                }
                "Infinity" | "inf" => {
                    out.push(f64::INFINITY);
                    Ok(())
                }
                "-Infinity" | "-inf" => {
                    out.push(f64::NEG_INFINITY);
                    Ok(())
                }
                _ => Err(format!("the string `{}` where a number belongs", crate::remote::short(s))),
            },
            Value::Null => Err("null where a number belongs".into()),
            Value::Object(_) => Err("an object where a number belongs".into()),
        }
    }
    walk(data, &mut out)?;
    Ok(out)
}

/// Flattens BYTES `data` (flat or nested arrays of strings) into strings.
pub fn strings(data: &Value) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) -> Result<(), String> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|i| walk(i, out)),
            Value::String(s) => {
                out.push(s.clone());
                Ok(())
            }
            other => Err(format!("BYTES data holds {}, not strings", kind(other))),
        }
    }
    walk(data, &mut out)?;
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The shape field of a tensor.
pub fn shape_of(tensor: &Value) -> Result<Vec<i64>, String> {
    let Some(Value::Array(dims)) = tensor.get("shape") else { return Err("has no `shape` array".into()) };
    dims.iter().map(|d| d.as_i64().ok_or_else(|| format!("shape entry `{d}` is not an integer"))).collect()
}

/// Triton's binary tensor data extension.
pub mod binary {
    /// The request/response header giving the length of the JSON part.
    pub const HEADER: &str = "inference-header-content-length";

    /// Splits BYTES elements written as 4-byte little-endian lengths followed by the bytes.
    pub fn split_bytes(mut raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        while !raw.is_empty() {
            if raw.len() < 4 {
                return Err(format!("{} trailing bytes where a 4-byte length belongs", raw.len()));
            }
            let n = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
            raw = &raw[4..];
            if raw.len() < n {
                return Err(format!("an element of {n} bytes with only {} left", raw.len()));
            }
            out.push(raw[..n].to_vec());
            raw = &raw[n..];
        }
        Ok(out)
    }

    /// Writes BYTES elements as 4-byte little-endian lengths followed by the bytes.
    pub fn join_bytes<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            out.extend_from_slice(&(item.len() as u32).to_le_bytes());
            out.extend_from_slice(item);
        }
        out
    }

    /// Little-endian numbers of a fixed-size datatype as f64 (FP16/BF16 converted exactly).
    pub fn numbers(datatype: &str, raw: &[u8]) -> Result<Vec<f64>, String> {
        let size = super::element_size(datatype).ok_or_else(|| format!("{datatype} has no fixed element size"))?;
        if !raw.len().is_multiple_of(size) {
            return Err(format!("{} bytes is not a whole number of {datatype} elements", raw.len()));
        }
        let values = raw.chunks_exact(size).map(|c| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            match datatype {
                "BOOL" | "UINT8" => c[0] as f64,
                "INT8" => c[0] as i8 as f64,
                "UINT16" => u16::from_le_bytes([c[0], c[1]]) as f64,
                "INT16" => i16::from_le_bytes([c[0], c[1]]) as f64,
                "FP16" => f16_to_f64(u16::from_le_bytes([c[0], c[1]])),
                "BF16" => f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64,
                "UINT32" => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                "INT32" => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                "FP32" => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                "UINT64" => u64::from_le_bytes(b) as f64,
                "INT64" => i64::from_le_bytes(b) as f64,
                _ => f64::from_le_bytes(b),
            }
        });
        Ok(values.collect())
    }

    fn f16_to_f64(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = ((h >> 10) & 0x1f) as i32;
        let frac = (h & 0x3ff) as f64;
        sign * match exp {
            0 => frac * 2f64.powi(-24),
            31 if frac == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_flattens_row_major_from_flat_or_nested_arrays() {
        assert_eq!(numbers(&json!([[1, 2], [3.5, true]])).unwrap(), vec![1.0, 2.0, 3.5, 1.0]);
        assert!(numbers(&json!([1, null])).unwrap_err().contains("null"));
        assert!(numbers(&json!(["abc"])).unwrap_err().contains("abc"));
        assert!(numbers(&json!(["NaN"])).unwrap()[0].is_nan());
        assert_eq!(strings(&json!([["a"], ["b"]])).unwrap(), vec!["a", "b"]);
        assert!(strings(&json!([1])).unwrap_err().contains("a number"));
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[-1, 3]), None);
        assert_eq!(shape_text(&[-1, 192]), "[-1, 192]");
    }

    #[test]
    fn binary_tensors_round_trip() {
        let joined = binary::join_bytes([b"ab".as_slice(), b"".as_slice(), b"xyz".as_slice()]);
        assert_eq!(joined[..4], 2u32.to_le_bytes());
        assert_eq!(binary::split_bytes(&joined).unwrap(), vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]);
        assert!(binary::split_bytes(&joined[..joined.len() - 1]).is_err());
        let raw: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(binary::numbers("FP32", &raw).unwrap(), vec![1.5, -2.0]);
        assert_eq!(binary::numbers("FP16", &[0x00, 0x3c, 0x00, 0xc0]).unwrap(), vec![1.0, -2.0]);
        assert_eq!(binary::numbers("INT64", &(-3i64).to_le_bytes()).unwrap(), vec![-3.0]);
        assert!(binary::numbers("FP32", &[0, 0, 0]).is_err());
    }
}
