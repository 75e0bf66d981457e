//! From a message payload to the messages it holds: decompression (LZ4,
//! ZLIB, ZSTD, Snappy raw or framed) and batches.

use std::io::Read;

use prost::Message as _;
use pulsar::message::proto::{CompressionType, MessageMetadata, SingleMessageMetadata};

/// The largest message accepted once decompressed.
pub const MAX_UNCOMPRESSED: usize = 64 << 20;

/// One message of a payload (the only one, or one of a batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Single {
    /// Its data.
    pub data: Vec<u8>,
    /// Its key (partition key).
    pub key: Option<String>,
    /// Its event time (ms since the epoch), if the producer set one.
    pub event_time: Option<u64>,
    /// Its index in its batch, if it was batched.
    pub batch_index: Option<i32>,
}

/// The messages of a payload; a batch member the broker compacted out is
/// left out. An error says why the payload cannot be read.
pub fn unpack(metadata: &MessageMetadata, data: &[u8]) -> Result<Vec<Single>, String> {
    if !metadata.encryption_keys.is_empty() {
        return Err("the message is encrypted (end-to-end encryption is not supported)".into());
    }
    if metadata.num_chunks_from_msg.is_some_and(|n| n > 1) {
        return Err("the message is chunked (chunked messages are not supported)".into());
    }
    let codec = metadata.compression.unwrap_or(0);
    let data = decompress(codec, data, metadata.uncompressed_size)?;
    // As the official clients read it: a batch when the field is present.
    if metadata.num_messages_in_batch.is_none() {
        return Ok(vec![Single {
            data: data.into_owned(),
            key: metadata.partition_key.clone(),
            event_time: metadata.event_time.filter(|t| *t > 0),
            batch_index: None,
        }]);
    }
    let count = metadata.num_messages_in_batch.unwrap_or(1);
    let count = usize::try_from(count).map_err(|_| format!("a batch of {count} messages"))?;
    // Each member takes at least its 4-byte size: a hostile count cannot
    // make this allocate more than the payload allows.
    let mut out = Vec::with_capacity(count.min(data.len() / 4));
    let mut rest: &[u8] = &data;
    for index in 0..count {
        let member = || format!("batch member {index} of {count}");
        let (size, after) = take_u32(rest).ok_or_else(|| format!("{}: truncated", member()))?;
        let (single, after) = after
            .split_at_checked(size as usize)
            .ok_or_else(|| format!("{}: metadata beyond the payload", member()))?;
        let single = SingleMessageMetadata::decode(single).map_err(|e| format!("{}: {e}", member()))?;
        let payload_size = usize::try_from(single.payload_size)
            .map_err(|_| format!("{}: a payload of {} bytes", member(), single.payload_size))?;
        let (body, after) = after
            .split_at_checked(payload_size)
            .ok_or_else(|| format!("{}: data beyond the payload", member()))?;
        rest = after;
        if single.compacted_out.unwrap_or(false) {
            continue;
        }
        out.push(Single {
            data: body.to_vec(),
            key: single.partition_key.clone(),
            event_time: single.event_time.filter(|t| *t > 0),
            batch_index: Some(index as i32),
        });
    }
    Ok(out)
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_at_checked(4)?;
    Some((u32::from_be_bytes([head[0], head[1], head[2], head[3]]), rest))
}

/// The name of a compression codec, for reasons.
fn codec_name(codec: i32) -> String {
    CompressionType::try_from(codec)
        .map(|c| c.as_str_name().to_string())
        .unwrap_or_else(|_| format!("codec {codec}"))
}

/// Decompresses `data` compressed with `codec` (a `CompressionType`);
/// `uncompressed_size` is the size the producer declared.
pub fn decompress(
    codec: i32,
    data: &[u8],
    uncompressed_size: Option<u32>,
) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    let declared = uncompressed_size.map(|s| s as usize).filter(|s| *s > 0);
    if declared.is_some_and(|s| s > MAX_UNCOMPRESSED) {
        return Err(format!(
            "{}: the declared uncompressed size {} is above {MAX_UNCOMPRESSED} bytes",
            codec_name(codec),
            declared.unwrap_or_default()
        ));
    }
    let limit = declared.unwrap_or(MAX_UNCOMPRESSED);
    let kind = CompressionType::try_from(codec).map_err(|_| format!("unknown compression codec {codec}"))?;
    let out = match kind {
        CompressionType::None => return Ok(std::borrow::Cow::Borrowed(data)),
        CompressionType::Lz4 => {
            let size = declared.ok_or("LZ4: no uncompressed size in the metadata")?;
            lz4::block::decompress(data, Some(size as i32)).map_err(|e| format!("LZ4: {e}"))?
        }
        CompressionType::Zlib => {
            read_limited(flate2::read::ZlibDecoder::new(data), limit).map_err(|e| format!("ZLIB: {e}"))?
        }
        CompressionType::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| format!("ZSTD: {e}"))?;
            read_limited(decoder, limit).map_err(|e| format!("ZSTD: {e}"))?
        }
        CompressionType::Snappy => snappy(data, limit)?,
    };
    if let Some(size) = declared
        && out.len() != size
    {
        return Err(format!(
            "{}: {} bytes once decompressed, the metadata says {size}",
            codec_name(codec),
            out.len()
        ));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Reads all of `reader`, refusing more than `limit` bytes.
fn read_limited(reader: impl Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {limit} bytes once decompressed"),
        ));
    }
    Ok(out)
}

/// The start of a Snappy frame stream (its stream identifier chunk).
const SNAPPY_STREAM: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Snappy: the Java, C++ and Python clients write raw blocks, pulsar-rs
/// writes the framed format; either is read.
fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let raw = || -> Result<Vec<u8>, String> {
        let size = snap::raw::decompress_len(data).map_err(|e| e.to_string())?;
        if size > limit {
            return Err(format!("{size} bytes once decompressed, more than {limit}"));
        }
        snap::raw::Decoder::new()
            .decompress_vec(data)
            .map_err(|e| e.to_string())
    };
    let framed = || read_limited(snap::read::FrameDecoder::new(data), limit).map_err(|e| e.to_string());
    if data.starts_with(SNAPPY_STREAM) {
        framed().or_else(|e| raw().map_err(|_| format!("Snappy (framed): {e}")))
    } else {
        raw().map_err(|e| format!("Snappy: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn metadata(codec: CompressionType, uncompressed: usize, batch: Option<i32>) -> MessageMetadata {
        MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 1,
            publish_time: 1,
            compression: Some(codec as i32),
            uncompressed_size: Some(uncompressed as u32),
            num_messages_in_batch: batch,
            ..Default::default()
        }
    }

    fn batch(members: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (data, key) in members {
            let single = SingleMessageMetadata {
                partition_key: key.map(str::to_string),
                payload_size: data.len() as i32,
                event_time: Some(42),
                ..Default::default()
            };
            out.extend_from_slice(&(single.encoded_len() as u32).to_be_bytes());
            out.extend_from_slice(&single.encode_to_vec());
            out.extend_from_slice(data.as_bytes());
        }
        out
    }

    fn compress(codec: CompressionType, data: &[u8]) -> Vec<u8> {
        match codec {
            CompressionType::None => data.to_vec(),
            CompressionType::Lz4 => lz4::block::compress(data, None, false).unwrap(),
            CompressionType::Zlib => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            CompressionType::Zstd => zstd::encode_all(data, 3).unwrap(),
            CompressionType::Snappy => snap::raw::Encoder::new().compress_vec(data).unwrap(),
        }
    }

    #[test]
    fn every_codec_and_batches_unpack() {
        let members = [
            ("{\"a\":1}", Some("k1")),
            ("{\"b\":2}", None),
            ("{\"c\":3}", Some("k3")),
        ];
        let plain = batch(&members);
        for codec in [
            CompressionType::None,
            CompressionType::Lz4,
            CompressionType::Zlib,
            CompressionType::Zstd,
            CompressionType::Snappy,
        ] {
            let packed = compress(codec, &plain);
            let singles = unpack(&metadata(codec, plain.len(), Some(3)), &packed).unwrap();
            let got: Vec<(&[u8], Option<&str>, Option<i32>)> = singles
                .iter()
                .map(|s| (s.data.as_slice(), s.key.as_deref(), s.batch_index))
                .collect();
            assert_eq!(
                got,
                [
                    (&b"{\"a\":1}"[..], Some("k1"), Some(0)),
                    (&b"{\"b\":2}"[..], None, Some(1)),
                    (&b"{\"c\":3}"[..], Some("k3"), Some(2))
                ],
                "{codec:?}"
            );
            assert_eq!(singles[0].event_time, Some(42));
        }
        let framed = {
            let mut e = snap::write::FrameEncoder::new(Vec::new());
            e.write_all(&plain).unwrap();
            e.into_inner().unwrap()
        };
        assert!(framed.starts_with(SNAPPY_STREAM));
        let singles = unpack(&metadata(CompressionType::Snappy, plain.len(), Some(3)), &framed).unwrap();
        assert_eq!(singles.len(), 3, "framed Snappy (pulsar-rs)");
        let one = unpack(&metadata(CompressionType::None, 3, None), b"abc").unwrap();
        assert_eq!(
            one,
            [Single {
                data: b"abc".to_vec(),
                key: None,
                event_time: None,
                batch_index: None
            }]
        );
    }

    #[test]
    fn corrupt_payloads_are_reasons_not_panics() {
        let plain = batch(&[("{\"a\":1}", None), ("{\"b\":2}", None)]);
        for codec in [
            CompressionType::Lz4,
            CompressionType::Zlib,
            CompressionType::Zstd,
            CompressionType::Snappy,
        ] {
            let mut packed = compress(codec, &plain);
            let reason = unpack(
                &metadata(codec, plain.len(), Some(2)),
                b"\xff\xff\xff\xff not compressed",
            )
            .unwrap_err();
            let name = codec.as_str_name().to_lowercase();
            assert!(reason.to_lowercase().starts_with(&name), "{codec:?}: {reason}");
            packed.truncate(packed.len() / 2);
            assert!(
                unpack(&metadata(codec, plain.len(), Some(2)), &packed).is_err(),
                "{codec:?} truncated"
            );
            let reason = unpack(&metadata(codec, plain.len() + 1, Some(2)), &compress(codec, &plain)).unwrap_err();
            assert!(reason.to_lowercase().starts_with(&name), "{codec:?}: {reason}");
        }
        assert!(
            unpack(&metadata(CompressionType::None, 0, Some(3)), &plain)
                .unwrap_err()
                .contains("member 2")
        );
        assert!(unpack(&metadata(CompressionType::None, 0, Some(1_000_000_000)), &plain).is_err());
        assert!(unpack(&metadata(CompressionType::None, 0, Some(-5)), &plain).is_err());
        let mut unknown = metadata(CompressionType::None, 0, None);
        unknown.compression = Some(99);
        assert!(
            unpack(&unknown, b"x")
                .unwrap_err()
                .contains("unknown compression codec 99")
        );
        let huge = metadata(CompressionType::Zlib, MAX_UNCOMPRESSED + 1, None);
        assert!(unpack(&huge, b"x").unwrap_err().contains("declared uncompressed size"));
        let bomb = vec![0u8; 1 << 20];
        let packed = compress(CompressionType::Zstd, &bomb);
        let mut undeclared = metadata(CompressionType::Zstd, 0, None);
        undeclared.uncompressed_size = None;
        assert_eq!(unpack(&undeclared, &packed).unwrap()[0].data.len(), 1 << 20);
    }
}
