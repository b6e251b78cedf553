//! The framing schema registries put in front of each record's bytes, read without a network
//! call: which schema to fetch, and where the payload starts.
//!
//! - Confluent: magic byte `0`, the schema id (4 bytes, big-endian), then for Protobuf the
//!   message indexes (a zigzag varint count, then zigzag varint indexes; the single byte `0`
//!   is `[0]`, the file's first message), then the payload.
//! - AWS Glue Schema Registry: header version byte `3`, compression byte (`0` none, `5` zlib),
//!   the schema version id (a 16-byte UUID), then the payload, zlib-compressed with `5`.

use std::io::Read as _;

/// Which schema a record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaRef {
    /// A Confluent-compatible registry's schema id.
    Confluent(u32),
    /// A Glue schema version id.
    Glue(uuid::Uuid),
}

/// A record's bytes, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Framed {
    /// The schema it names.
    pub schema: SchemaRef,
    /// Confluent Protobuf message indexes (empty otherwise).
    pub indexes: Vec<usize>,
    /// The payload (decompressed).
    pub payload: Vec<u8>,
}

/// Bytes too large to decompress: a zlib bomb is undecodable, not a crash (Kafka's own record
/// limit is far below).
const MAX_DECOMPRESSED: u64 = 16 * 1024 * 1024;

/// Splits Confluent-framed bytes; `protobuf` reads the message indexes.
pub fn confluent(bytes: &[u8], protobuf: bool) -> Result<Framed, String> {
    let (&magic, rest) = bytes.split_first().ok_or("empty: no Confluent framing")?;
    if magic != 0 {
        return Err(format!("starts with byte {magic}, not the Confluent magic byte 0"));
    }
    let id: [u8; 4] = rest.get(..4).and_then(|b| b.try_into().ok()).ok_or("too short for a schema id")?;
    let mut payload = &rest[4..];
    let mut indexes = Vec::new();
    if protobuf {
        let count = zigzag(varint(&mut payload)?);
        if count == 0 {
            indexes.push(0);
        } else {
            for _ in 0..count.min(64) {
                indexes
                    .push(usize::try_from(zigzag(varint(&mut payload)?)).map_err(|_| "bad message index")?);
            }
            if count > 64 {
                return Err(format!("{count} message indexes: not a message path"));
            }
        }
    }
    Ok(Framed { schema: SchemaRef::Confluent(u32::from_be_bytes(id)), indexes, payload: payload.to_vec() })
}

/// Splits Glue-framed bytes, decompressing the payload.
pub fn glue(bytes: &[u8]) -> Result<Framed, String> {
    let header = bytes.get(..18).ok_or("too short for the Glue header (18 bytes)")?;
    if header[0] != 3 {
        return Err(format!("starts with byte {}, not the Glue header version 3", header[0]));
    }
    let id = uuid::Uuid::from_slice(&header[2..18]).map_err(|err| err.to_string())?;
    let payload = match header[1] {
        0 => bytes[18..].to_vec(),
        5 => {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&bytes[18..])
                .take(MAX_DECOMPRESSED + 1)
                .read_to_end(&mut out)
                .map_err(|err| format!("zlib: {err}"))?;
            if out.len() as u64 > MAX_DECOMPRESSED {
                return Err("decompresses to more than 16 MiB".into());
            }
            out
        }
        other => return Err(format!("compression byte {other} (Glue knows 0 and 5)")),
    };
    Ok(Framed { schema: SchemaRef::Glue(id), indexes: Vec::new(), payload })
}

/// One unsigned LEB128 varint from the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("truncated varint")?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn zigzag(value: u64) -> i64 {
    // The cast reinterprets the bits, as zigzag decoding does.
    #[allow(clippy::cast_possible_wrap)]
    let shifted = (value >> 1) as i64;
    shifted ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confluent_framing_with_and_without_message_indexes() {
        let avro = confluent(&[0, 0, 0, 1, 2, 0xaa], false).expect("framed");
        assert_eq!(avro, Framed { schema: SchemaRef::Confluent(258), indexes: vec![], payload: vec![0xaa] });
        // The single byte 0: the first message.
        let first = confluent(&[0, 0, 0, 0, 7, 0, 0xbb], true).expect("framed");
        assert_eq!((first.indexes, first.payload), (vec![0], vec![0xbb]));
        // [1, 2]: count 2, then 1, 2, all zigzag (2, 4).
        let nested = confluent(&[0, 0, 0, 0, 7, 4, 2, 4, 0xcc], true).expect("framed");
        assert_eq!((nested.indexes, nested.payload), (vec![1, 2], vec![0xcc]));
        assert!(confluent(&[1, 0, 0, 0, 1], false).is_err());
        assert!(confluent(&[0, 0, 0], false).is_err());
        assert!(confluent(&[0, 0, 0, 0, 1, 0x80], true).is_err(), "truncated varint");
    }

    #[test]
    fn glue_framing_plain_and_zlib() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let mut plain = vec![3, 0];
        plain.extend_from_slice(id.as_bytes());
        plain.extend_from_slice(b"payload");
        assert_eq!(
            glue(&plain).expect("framed"),
            Framed { schema: SchemaRef::Glue(id), indexes: vec![], payload: b"payload".to_vec() }
        );
        let mut compressed = vec![3, 5];
        compressed.extend_from_slice(id.as_bytes());
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, b"payload").expect("compress");
        compressed.extend(encoder.finish().expect("compress"));
        assert_eq!(glue(&compressed).expect("framed").payload, b"payload");
        assert!(glue(&[3, 9, 0]).is_err());
        let mut bad = compressed.clone();
        bad[1] = 7;
        assert!(glue(&bad).is_err());
        let mut corrupt = compressed;
        let last = corrupt.len() - 3;
        corrupt[last] ^= 0xff;
        assert!(glue(&corrupt).is_err(), "a corrupt zlib stream is an error, not a panic");
    }
}
