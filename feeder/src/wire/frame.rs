//! Pulsar frames on the wire: a command, optionally followed by a message
//! payload (metadata and data), with or without the CRC32C checksum.

use bytes::{Buf, BufMut, BytesMut};
use prost::Message as _;
use pulsar::message::proto::{BaseCommand, MessageMetadata};

/// The two bytes that announce a payload's checksum.
const MAGIC: [u8; 2] = [0x0e, 0x01];
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
/// The largest frame read (Pulsar's default largest message is 5 MiB).
pub const MAX_FRAME: usize = 64 << 20;

/// One frame read from the broker.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The command.
    pub command: BaseCommand,
    /// The message payload that follows a MESSAGE command.
    pub payload: Option<Payload>,
}

/// A message payload as read.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The message's metadata, or why the payload cannot be read (checksum
    /// mismatch, truncated or unreadable metadata).
    pub metadata: Result<MessageMetadata, String>,
    /// The message's data; when the metadata cannot be read, every byte of
    /// the payload as received (so that it can be dead-lettered).
    pub data: Vec<u8>,
}

/// The frame codec: decodes [`Frame`]s, encodes [`Outgoing`] frames.
#[derive(Debug, Default, Clone, Copy)]
pub struct Codec;

/// A frame to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The command.
    pub command: BaseCommand,
    /// A message to publish (SEND): its metadata and data.
    pub payload: Option<(MessageMetadata, Vec<u8>)>,
}

impl From<BaseCommand> for Outgoing {
    fn from(command: BaseCommand) -> Self {
        Outgoing { command, payload: None }
    }
}

fn invalid(text: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, text)
}

impl tokio_util::codec::Decoder for Codec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        let Some(size) = src.get(..4) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
        if size > MAX_FRAME {
            return Err(invalid(format!("a frame of {size} bytes (at most {MAX_FRAME})")));
        }
        if src.len() < 4 + size {
            src.reserve(4 + size - src.len());
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(size);
        parse(&frame).map(Some)
    }
}

impl tokio_util::codec::Encoder<Outgoing> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode(&item, dst);
        Ok(())
    }
}

/// Appends `item` to `dst` as a frame (with a checksum over its payload).
pub fn encode(item: &Outgoing, dst: &mut BytesMut) {
    let command_size = item.command.encoded_len();
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u32(command_size as u32);
    item.command.encode(dst).expect("BytesMut grows");
    if let Some((metadata, data)) = &item.payload {
        dst.put_slice(&MAGIC);
        let checksum_at = dst.len();
        dst.put_u32(0);
        let checked_from = dst.len();
        dst.put_u32(metadata.encoded_len() as u32);
        metadata.encode(dst).expect("BytesMut grows");
        dst.put_slice(data);
        let checksum = CRC32C.checksum(&dst[checked_from..]);
        dst[checksum_at..checksum_at + 4].copy_from_slice(&checksum.to_be_bytes());
    }
    let size = (dst.len() - start - 4) as u32;
    dst[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Reads a big-endian u32 off the front of `bytes`.
fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_at_checked(4)?;
    Some((u32::from_be_bytes([head[0], head[1], head[2], head[3]]), rest))
}

/// Parses one frame (without its size prefix). A command that cannot be read
/// is an error (the connection cannot go on); a payload that cannot be read
/// is returned with the reason.
pub fn parse(frame: &[u8]) -> Result<Frame, std::io::Error> {
    let (command_size, rest) = take_u32(frame).ok_or_else(|| invalid("a frame without a command".into()))?;
    let (command, rest) = rest.split_at_checked(command_size as usize).ok_or_else(|| {
        invalid(format!(
            "a command of {command_size} bytes in a frame of {}",
            frame.len()
        ))
    })?;
    let command = BaseCommand::decode(command).map_err(|e| invalid(format!("an unreadable command: {e}")))?;
    let payload = (!rest.is_empty()).then(|| payload(rest));
    Ok(Frame { command, payload })
}

fn payload(rest: &[u8]) -> Payload {
    let unreadable = |reason: String, bytes: &[u8]| Payload {
        metadata: Err(reason),
        data: bytes.to_vec(),
    };
    let body = match rest.strip_prefix(&MAGIC) {
        Some(checked) => {
            let Some((expected, body)) = take_u32(checked) else {
                return unreadable("a truncated checksum".into(), rest);
            };
            let actual = CRC32C.checksum(body);
            if actual != expected {
                return unreadable(
                    format!("checksum mismatch (the frame says {expected:#010x}, the payload's is {actual:#010x})"),
                    body,
                );
            }
            body
        }
        // Some brokers leave the optional checksum out.
        None => rest,
    };
    let Some((metadata_size, after)) = take_u32(body) else {
        return unreadable("a payload without metadata".into(), body);
    };
    let Some((metadata, data)) = after.split_at_checked(metadata_size as usize) else {
        return unreadable(
            format!("metadata of {metadata_size} bytes in a payload of {}", body.len()),
            body,
        );
    };
    match MessageMetadata::decode(metadata) {
        Ok(metadata) => Payload {
            metadata: Ok(metadata),
            data: data.to_vec(),
        },
        Err(e) => unreadable(format!("unreadable message metadata: {e}"), body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulsar::message::proto::base_command::Type;
    use tokio_util::codec::{Decoder, Encoder};

    fn message(data: &[u8]) -> Outgoing {
        Outgoing {
            command: BaseCommand {
                r#type: Type::Send as i32,
                ..Default::default()
            },
            payload: Some((
                MessageMetadata {
                    producer_name: "p".into(),
                    sequence_id: 7,
                    publish_time: 9,
                    ..Default::default()
                },
                data.to_vec(),
            )),
        }
    }

    #[test]
    fn frames_round_trip_and_arrive_in_pieces() {
        let mut bytes = BytesMut::new();
        Codec.encode(message(b"hello"), &mut bytes).unwrap();
        Codec
            .encode(
                BaseCommand {
                    r#type: Type::Ping as i32,
                    ..Default::default()
                }
                .into(),
                &mut bytes,
            )
            .unwrap();
        let all = bytes.clone();
        let mut partial = BytesMut::from(&all[..5]);
        assert!(Codec.decode(&mut partial).unwrap().is_none());
        let mut src = BytesMut::from(&all[..]);
        let first = Codec.decode(&mut src).unwrap().unwrap();
        let payload = first.payload.unwrap();
        assert_eq!(payload.metadata.unwrap().sequence_id, 7);
        assert_eq!(payload.data, b"hello");
        let second = Codec.decode(&mut src).unwrap().unwrap();
        assert_eq!(second.command.r#type, Type::Ping as i32);
        assert!(second.payload.is_none());
        assert!(src.is_empty());
    }

    #[test]
    fn a_payload_without_checksum_is_read_and_a_wrong_checksum_is_reported() {
        let mut bytes = BytesMut::new();
        encode(&message(b"hello"), &mut bytes);
        // Drop the magic and checksum (6 bytes after the command).
        let command_size = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let at = 8 + command_size;
        let mut unchecked = bytes[4..at].to_vec();
        unchecked.extend_from_slice(&bytes[at + 6..]);
        let frame = parse(&unchecked).unwrap();
        assert_eq!(frame.payload.unwrap().data, b"hello");

        let mut corrupt = bytes[4..].to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let payload = parse(&corrupt).unwrap().payload.unwrap();
        assert!(payload.metadata.unwrap_err().contains("checksum mismatch"));
        assert!(payload.data.ends_with(b"helln"), "the bytes as received");
    }

    #[test]
    fn hostile_frames_are_errors_or_reasons_never_panics() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0, 0, 0, 200, 1]).is_err());
        assert!(parse(&[0, 0, 0, 2, 0xff, 0xff]).is_err());
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(Codec.decode(&mut src).is_err(), "a frame too large");
        // A valid command followed by truncated payloads.
        let mut bytes = BytesMut::new();
        encode(&message(b"x"), &mut bytes);
        let command_size = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        for cut in 8 + command_size + 1..bytes.len() {
            let frame = parse(&bytes[4..cut]).unwrap();
            assert!(frame.payload.unwrap().metadata.is_err(), "cut at {cut}");
        }
    }
}
