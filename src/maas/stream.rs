//! Streaming machine-list parsing: a list is parsed while it arrives, machine by machine.
//!
//! A 10,000-machine `GET machines/` is ~75 MB of JSON. Buffering it and then parsing it
//! kept two copies alive at the peak, and the allocator kept that peak as resident memory
//! long after. Here the body's chunks go from the HTTP client through a bounded channel
//! ([`ChunkReader`]) to a blocking thread where serde_json reads the top-level array one
//! element at a time ([`parse_list`]): each element's bytes are held only until it has
//! been turned into the compact [`Machine`] record, every field nobody reads is skipped,
//! so the most this costs at once is one machine's JSON plus the channel's few chunks.
//!
//! The rules of the buffered parser stay: one malformed machine is skipped with its index
//! and `system_id` (the rest proceed); a list that is not a JSON array, is cut short, or
//! has anything but whitespace after its `]` is an error as a whole, and nothing of it is
//! published.

use std::fmt;
use std::io::{self, Read};

use bytes::{Buf, Bytes};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::model::{ListError, Machine, ParsedList, Skipped};
use super::ApiVersion;

/// Chunks in flight between the receiving actor thread and the parsing thread: enough to
/// keep the parser busy, few enough that a stalled parser stops the reads (backpressure).
pub const CHANNEL_CHUNKS: usize = 16;

/// Buffer between the chunk reader and serde_json's byte-at-a-time reader.
const READ_BUFFER: usize = 64 * 1024;

/// One item on the body channel: a chunk, or why the body could not be read to its end.
pub type Chunk = Result<Bytes, io::Error>;

/// A blocking [`Read`] over body chunks sent from the HTTP client's task.
///
/// The end of the channel is the end of the body; an `Err` item (transport failure,
/// size limit) is returned to the parser, which then fails the whole list.
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    current: Bytes,
}

impl ChunkReader {
    /// A reader and the sender the receiving side feeds.
    pub fn channel() -> (tokio::sync::mpsc::Sender<Chunk>, ChunkReader) {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
        (
            tx,
            ChunkReader {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Parse a machine list from a blocking reader (the body channel), one machine at a time.
pub fn parse_list<R: Read>(reader: R, version: ApiVersion) -> Result<ParsedList, ListError> {
    let reader = io::BufReader::with_capacity(READ_BUFFER, reader);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = de.deserialize_seq(ListVisitor { version })?;
    // Anything but whitespace after the closing bracket means the answer is not a list.
    de.end()?;
    Ok(parsed)
}

/// Parse a machine list already in memory (tests, fixtures, benchmarks) with the same
/// per-machine rules as the stream.
pub fn parse_slice(body: &[u8], version: ApiVersion) -> Result<ParsedList, ListError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = de.deserialize_seq(ListVisitor { version })?;
    de.end()?;
    Ok(parsed)
}

/// Visits the top-level array: each element is taken as raw JSON (syntax checked, nothing
/// allocated per field), then parsed into the compact record on its own, so a type error
/// in one machine costs only that machine.
struct ListVisitor {
    version: ApiVersion,
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = ParsedList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of machine objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ParsedList, A::Error> {
        let mut out = ParsedList::default();
        if let Some(n) = seq.size_hint() {
            out.machines.reserve(n);
        }
        let mut index = 0usize;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            match Machine::from_raw(raw.get(), self.version) {
                Ok(m) => out.machines.push(std::sync::Arc::new(m)),
                Err(e) => out.skipped.push(Skipped {
                    index,
                    system_id: system_id_of(raw.get()),
                    error: e.to_string(),
                }),
            }
            index += 1;
        }
        out.machines.shrink_to_fit();
        Ok(out)
    }
}

/// The `system_id` of an entry that did not parse, for the warning (a number or any
/// other JSON is shown as its text).
fn system_id_of(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        system_id: Option<serde_json::Value>,
    }
    serde_json::from_str::<IdOnly>(raw)
        .ok()
        .and_then(|i| i.system_id)
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maas::NodeStatus;

    fn feed(parts: Vec<Chunk>) -> Result<ParsedList, ListError> {
        let (tx, reader) = ChunkReader::channel();
        let parser = std::thread::spawn(move || parse_list(reader, ApiVersion::V2));
        for p in parts {
            if tx.blocking_send(p).is_err() {
                break;
            }
        }
        drop(tx);
        parser.join().expect("parser thread")
    }

    fn chunks(body: &[u8], size: usize) -> Vec<Chunk> {
        body.chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    const LIST: &[u8] =
        br#" [{"system_id":"a","status":4,"zone":{"name":"default"},"x":[1,{"y":null}]},
        {"system_id":"b","status":"four"},{"system_id":"c","status":6,"owner":"me"}] "#;

    #[test]
    fn chunked_anywhere_gives_the_same_machines() {
        for size in [1, 2, 3, 7, 64, 4096] {
            let p = feed(chunks(LIST, size)).unwrap();
            let ids: Vec<_> = p.machines.iter().map(|m| m.system_id.as_str()).collect();
            assert_eq!(ids, ["a", "c"], "chunk size {size}");
            assert_eq!(p.machines[1].status, NodeStatus::Deployed);
            assert_eq!(p.skipped.len(), 1);
            assert_eq!(p.skipped[0].index, 1);
            assert_eq!(p.skipped[0].system_id.as_deref(), Some("b"));
        }
    }

    #[test]
    fn a_cut_list_is_an_error_wherever_it_is_cut() {
        let body = LIST.trim_ascii_end();
        for cut in 0..body.len() {
            let r = feed(chunks(&body[..cut], 5));
            assert!(r.is_err(), "cut at {cut} accepted");
        }
        assert!(feed(chunks(body, 5)).is_ok());
    }

    #[test]
    fn a_transport_error_fails_the_list() {
        let mut parts = chunks(&LIST[..40], 10);
        parts.push(Err(io::Error::other("connection reset")));
        let e = feed(parts).unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
    }

    #[test]
    fn trailing_garbage_and_non_objects_fail_the_list() {
        assert!(parse_slice(br#"[{"system_id":"a","status":4}] x"#, ApiVersion::V2).is_err());
        assert!(parse_slice(br#"[{"system_id":"a","status":4}][]"#, ApiVersion::V2).is_err());
        assert!(parse_slice(br#"{"system_id":"a","status":4}"#, ApiVersion::V2).is_err());
        let p = parse_slice(br#"[{"system_id":"a","status":4}, 3]"#, ApiVersion::V2).unwrap();
        assert_eq!((p.machines.len(), p.skipped.len()), (1, 1));
        assert!(parse_slice(b"[]", ApiVersion::V2)
            .unwrap()
            .machines
            .is_empty());
    }
}
