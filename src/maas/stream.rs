//! Streaming machine-list parsing: a list is parsed while it arrives, machine by machine.
//!
//! A 10,000-machine `GET machines/` is 75 to 90 MB of JSON. Buffering it and then parsing
//! it kept two copies alive at the peak, and the allocator kept that peak as resident
//! memory long after. Here the body's chunks go from the HTTP client through a bounded
//! channel ([`ChunkReader`]) to a blocking thread where serde_json parses the top-level
//! array one element at a time ([`parse_list`]): each element's bytes are held only until
//! it has been turned into the compact [`Machine`] record (every field nobody reads is
//! skipped), so the most a list costs at once is a window of the body (a few hundred KB,
//! more only for a single machine larger than that) plus the channel's four chunks.
//!
//! The rules of the buffered parser stay: one malformed machine is skipped with its index
//! and `system_id` (the rest proceed); a list that is not a JSON array, is cut short, or
//! has anything but whitespace after its `]` is an error as a whole, and nothing of it is
//! published.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use serde_json::value::RawValue;

use super::model::{ListError, Machine, ParsedList, Skipped};
use super::ApiVersion;

/// Chunks in flight between the receiving actor thread and the parsing thread: enough to
/// keep the parser busy, few enough that a stalled parser stops the reads (backpressure).
pub const CHANNEL_CHUNKS: usize = 4;

/// Bytes gathered before a chunk is handed to the parsing thread: the socket delivers a
/// 75 MB list in thousands of small chunks, and waking the parser for each one cost more
/// than the parse itself on a busy machine.
pub const COALESCE: usize = 256 * 1024;

/// Gathers the body's small chunks into [`COALESCE`]-sized ones for the channel.
#[derive(Default)]
pub struct Coalesce {
    pending: bytes::BytesMut,
}

impl Coalesce {
    /// Take one received chunk; returns a chunk to send once enough has gathered.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.pending.is_empty() && chunk.len() >= COALESCE {
            return Some(chunk);
        }
        self.pending.extend_from_slice(&chunk);
        (self.pending.len() >= COALESCE).then(|| self.pending.split().freeze())
    }

    /// What is left at the end of the body.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

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
///
/// serde_json parses every value, from a window of the body held in memory (its
/// slice reader is several times faster than its byte-at-a-time `io::Read` one):
/// each machine is deserialised straight into the compact record; when the window ends
/// inside a machine, more of the body is read and that machine is parsed again from its
/// start. Only the array's own `[`, `,` and `]` between values are stepped over here.
pub fn parse_list<R: Read>(reader: R, version: ApiVersion) -> Result<ParsedList, ListError> {
    Window::new(reader, REFILL)
        .list(version)
        .map_err(ListError::from)
}

/// Parse a machine list already in memory (tests, fixtures, benchmarks) with the same
/// per-machine rules as the stream.
pub fn parse_slice(body: &[u8], version: ApiVersion) -> Result<ParsedList, ListError> {
    parse_list(body, version)
}

/// Bytes read from the body at least each time the window is refilled: large enough that
/// re-parsing the one machine cut by the window's end costs little.
const REFILL: usize = 256 * 1024;

/// An error this close to the window's end may be the window's doing (a cut number).
const NEAR_END: usize = 64;

/// The part of the body not yet parsed.
struct Window<R> {
    reader: R,
    /// Read bytes are `buf[..end]`; the rest is room for the next read (kept, so a
    /// refill does not zero memory again).
    buf: Vec<u8>,
    end: usize,
    /// Where the unparsed bytes start in `buf`.
    pos: usize,
    /// The reader reported the end of the body.
    eof: bool,
    /// Bytes read at least per refill ([`REFILL`]; tiny in tests, to cut every element).
    refill: usize,
}

type JsonResult<T> = Result<T, serde_json::Error>;

/// What one element of the array turned out to be.
enum Element {
    Machine(Arc<Machine>),
    /// Well-formed JSON that is not a usable machine: skipped, with why.
    Skipped(Skipped),
}

impl<R: Read> Window<R> {
    fn new(reader: R, refill: usize) -> Self {
        Window {
            reader,
            buf: Vec::new(),
            end: 0,
            pos: 0,
            eof: false,
            refill,
        }
    }

    /// Read at least [`REFILL`] more bytes (or to the end); drops what was parsed.
    fn refill(&mut self) -> JsonResult<()> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        let want = self.end + self.refill;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.end < want {
            match self.reader.read(&mut self.buf[self.end..want]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(serde_json::Error::io(e)),
            }
        }
        Ok(())
    }

    /// The next byte that is not JSON whitespace, without consuming it; `None` at the end.
    fn peek(&mut self) -> JsonResult<Option<u8>> {
        loop {
            while let Some(&b) = self.buf[..self.end].get(self.pos) {
                if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    self.pos += 1;
                } else {
                    return Ok(Some(b));
                }
            }
            if self.eof {
                return Ok(None);
            }
            self.refill()?;
        }
    }

    fn expect(&mut self, what: &str) -> JsonResult<u8> {
        self.peek()?.ok_or_else(|| {
            <serde_json::Error as serde::de::Error>::custom(format!(
                "the list ends before its {what}"
            ))
        })
    }

    fn list(mut self, version: ApiVersion) -> JsonResult<ParsedList> {
        let bad = |what: String| <serde_json::Error as serde::de::Error>::custom(what);
        let mut out = ParsedList::default();
        if self.expect("opening '['")? != b'[' {
            return Err(bad("the answer is not a JSON array".into()));
        }
        self.pos += 1;
        let mut index = 0usize;
        if self.expect("closing ']'")? == b']' {
            self.pos += 1;
        } else {
            loop {
                match self.element(index, version)? {
                    Element::Machine(m) => out.machines.push(m),
                    Element::Skipped(s) => out.skipped.push(s),
                }
                index += 1;
                match self.expect("closing ']'")? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    other => {
                        return Err(bad(format!(
                            "expected ',' or ']' after entry {index}, found {:?}",
                            other as char
                        )))
                    }
                }
            }
        }
        // Anything but whitespace after the closing bracket means the answer is not a list.
        if self.peek()?.is_some() {
            return Err(bad("trailing characters after the list".into()));
        }
        out.machines.shrink_to_fit();
        Ok(out)
    }

    /// Parse one element at `pos`, reading more of the body while the window ends in it.
    fn element(&mut self, index: usize, version: ApiVersion) -> JsonResult<Element> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf[self.pos..self.end])
                .into_iter::<Machine>();
            let res = it.next();
            let used = it.byte_offset();
            match res {
                // A value that ends exactly at the window's end may go on (a number): read on.
                Some(Ok(_)) if self.pos + used == self.end && !self.eof => {}
                Some(Ok(mut m)) => {
                    self.pos += used;
                    m.normalise(version);
                    return Ok(Element::Machine(Arc::new(m)));
                }
                Some(Err(e)) if self.cut_by_window(&e) => {}
                // Not a machine; whether it is still well-formed JSON decides between
                // skipping it and failing the list (serde_json reports some data errors,
                // such as a struct given as a too-long array, as syntax errors).
                Some(Err(_)) => return self.skip(index, version),
                None if !self.eof => {}
                None => {
                    return Err(<serde_json::Error as serde::de::Error>::custom(
                        "the list ends inside an entry",
                    ))
                }
            }
            self.refill()?;
        }
    }

    /// Whether parsing failed only because the window ends inside the element: an
    /// end-of-input error, or any error at the window's last bytes (serde_json reports a
    /// number cut after `-`, `.` or `e` as an invalid number, not as the end of input).
    fn cut_by_window(&self, e: &serde_json::Error) -> bool {
        if self.eof {
            return false;
        }
        if e.is_eof() {
            return true;
        }
        let slice = &self.buf[self.pos..self.end];
        // serde_json counts lines and columns from 1; turn them into a byte offset.
        let line_start = if e.line() > 1 {
            slice
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(e.line() - 2)
                .map_or(slice.len(), |(i, _)| i + 1)
        } else {
            0
        };
        line_start + e.column() + NEAR_END >= slice.len()
    }

    /// Step over an element that could not be typed where it stood: well-formed JSON that
    /// is not a machine is skipped (with why); one that is not well-formed JSON fails the
    /// whole list.
    fn skip(&mut self, index: usize, version: ApiVersion) -> JsonResult<Element> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf[self.pos..self.end])
                .into_iter::<&RawValue>();
            let res = it.next();
            let used = it.byte_offset();
            match res {
                Some(Ok(_)) if self.pos + used == self.end && !self.eof => {}
                Some(Ok(raw)) => {
                    // Typed once more from the whole element: the first attempt may have
                    // failed only because the window ended inside it.
                    let element = match serde_json::from_str::<Machine>(raw.get()) {
                        Ok(mut m) => {
                            m.normalise(version);
                            Element::Machine(Arc::new(m))
                        }
                        Err(e) => Element::Skipped(Skipped {
                            index,
                            system_id: system_id_of(raw.get()),
                            error: e.to_string(),
                        }),
                    };
                    self.pos += used;
                    return Ok(element);
                }
                Some(Err(e)) if self.cut_by_window(&e) => {}
                Some(Err(e)) => return Err(e),
                None if !self.eof => {}
                None => {
                    return Err(<serde_json::Error as serde::de::Error>::custom(
                        "the list ends inside an entry",
                    ))
                }
            }
            self.refill()?;
        }
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
    fn machines_cut_by_the_window_anywhere_are_parsed_again_whole() {
        let body = br#"[{"system_id":"a","status":4,"zone":{"name":"z"},"n":-12.5e-3,"tag_names":["t1","t2"]},
            {"system_id":"b","status":"four"},{"system_id":"c","status":6,"owner":"me","x":null},
            {"system_id":"d","boot_interface":[null,null],"status":4}, 7, {"system_id":"e","status":10}]"#;
        for refill in 1..body.len() + 2 {
            let p = Window::new(&body[..], refill).list(ApiVersion::V2).unwrap();
            let ids: Vec<_> = p.machines.iter().map(|m| m.system_id.as_str()).collect();
            assert_eq!(ids, ["a", "c", "e"], "window of {refill} bytes");
            assert_eq!(p.machines[0].tag_names.len(), 2);
            let skipped: Vec<_> = p.skipped.iter().map(|s| s.index).collect();
            assert_eq!(skipped, [1, 3, 4], "window of {refill} bytes");
            assert!(
                p.skipped[0].error.contains("invalid type"),
                "{}",
                p.skipped[0].error
            );
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
        // Valid JSON that serde_json reports as a syntax error while typing it.
        let p = parse_slice(
            br#"[{"system_id":"a","status":4,"boot_interface":[null,null]},{"system_id":"b","status":4}]"#,
            ApiVersion::V2,
        )
        .unwrap();
        assert_eq!((p.machines.len(), p.skipped.len()), (1, 1));
        assert!(parse_slice(br#"[{"system_id":"a","status":4,}]"#, ApiVersion::V2).is_err());
        assert!(parse_slice(b"[]", ApiVersion::V2)
            .unwrap()
            .machines
            .is_empty());
    }
}
