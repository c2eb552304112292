//! The audit archive writer's hot loop, out of the Python interpreter (`kustos._native`).
//!
//! A batch (the complete lines of an audit log chunk, or the items of an `EventList` body)
//! is read in one call: for each event the few fields the archive needs (identity, index
//! keys, time) are taken from its JSON text without building Python objects. An event the
//! fast reader is not sure about — a request or response body (it may hold a value that
//! must be stripped), a field of an unexpected type, a lone surrogate, deep nesting, a
//! repeated field, anything that is not plain JSON — is handed back to the Python
//! reference path (`kustos.audit.records.prepare`), whose answer is then used as is. So
//! the fast reader only ever accepts texts that the reference would keep byte for byte.
//!
//! `commit` then chains, formats and indexes the batch exactly as `kustos.audit.archive`
//! does. Nothing here formats event content into an error: errors name counts and
//! positions only.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use sha2::{Digest, Sha256};

mod credentials;
mod detect;
mod reader;

use reader::{event_view, is_py_space, once, read_event, Packed, Reader, View, MAX_DEPTH};

// ------------------------------------------------------------------------------ events

/// Whether *text* is exactly what `orjson.dumps(orjson.loads(text))` gives: compact, only
/// the short escapes orjson writes, integers only, no repeated key, valid UTF-8. Such an
/// event's text is stored as it came by the reference too.
fn canonical(text: &[u8]) -> bool {
    fn value(b: &[u8], i: &mut usize, depth: u32) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match b.get(*i) {
            Some(b'{') => {
                *i += 1;
                if b.get(*i) == Some(&b'}') {
                    *i += 1;
                    return true;
                }
                let mut keys: Vec<&[u8]> = Vec::new();
                loop {
                    let start = *i;
                    if !string(b, i) {
                        return false;
                    }
                    let key = &b[start..*i];
                    if keys.contains(&key) {
                        return false;
                    }
                    keys.push(key);
                    if b.get(*i) != Some(&b':') {
                        return false;
                    }
                    *i += 1;
                    if !value(b, i, depth + 1) {
                        return false;
                    }
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return true;
                        }
                        _ => return false,
                    }
                }
            }
            Some(b'[') => {
                *i += 1;
                if b.get(*i) == Some(&b']') {
                    *i += 1;
                    return true;
                }
                loop {
                    if !value(b, i, depth + 1) {
                        return false;
                    }
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b']') => {
                            *i += 1;
                            return true;
                        }
                        _ => return false,
                    }
                }
            }
            Some(b'"') => string(b, i),
            Some(b't') => literal(b, i, b"true"),
            Some(b'f') => literal(b, i, b"false"),
            Some(b'n') => literal(b, i, b"null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = *i;
                if b[*i] == b'-' {
                    *i += 1;
                }
                let digits = *i;
                while *i < b.len() && b[*i].is_ascii_digit() {
                    *i += 1;
                }
                let n = *i - digits;
                // An integer orjson writes back the same: no -0, no leading zero, 64 bits.
                n > 0
                    && n <= 18
                    && !(b[digits] == b'0' && (n > 1 || digits > start))
                    && !matches!(b.get(*i), Some(b'.' | b'e' | b'E'))
            }
            _ => false,
        }
    }
    fn string(b: &[u8], i: &mut usize) -> bool {
        if b.get(*i) != Some(&b'"') {
            return false;
        }
        *i += 1;
        loop {
            match b.get(*i) {
                None => return false,
                Some(b'"') => {
                    *i += 1;
                    return true;
                }
                Some(b'\\') => match b.get(*i + 1) {
                    Some(b'"' | b'\\' | b'n' | b'r' | b't') => *i += 2,
                    _ => return false,
                },
                Some(&c) if c < 0x20 => return false,
                Some(_) => *i += 1,
            }
        }
    }
    fn literal(b: &[u8], i: &mut usize, word: &[u8]) -> bool {
        if b.get(*i..*i + word.len()) == Some(word) {
            *i += word.len();
            true
        } else {
            false
        }
    }
    if std::str::from_utf8(text).is_err() {
        return false;
    }
    let mut i = 0;
    value(text, &mut i, 0) && i == text.len()
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Where an event's stored text is: a span of the batch, or text the reference path made.
enum Data {
    Span(usize, usize),
    Owned(Vec<u8>),
}

struct Event {
    data: Data,
    /// auditID, 0xFF, stage (0xFF never occurs in UTF-8); none when auditID is empty.
    key: Option<Key>,
    hashes: [u32; 3],
    count: u8,
    time: Vec<u8>,
    stripped: bool,
    /// What the detectors use of it, as spans of its text (see `Packed`); `None` when they
    /// must read the text themselves.
    view: Option<Packed>,
}

// Nearly every item is `Ready`: boxing it would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
enum Item {
    Ready(Event),
    /// For the reference path: the text as it came.
    Unsure(usize, usize),
    /// The reference path found no Event in it.
    Skipped,
}

/// An identity, shared (not copied) by the commit and the dedupe window.
type Key = Arc<[u8]>;

fn identity(audit_id: &str, stage: &str) -> Option<Key> {
    if audit_id.is_empty() {
        return None;
    }
    let mut key = Vec::with_capacity(audit_id.len() + 1 + stage.len());
    key.extend_from_slice(audit_id.as_bytes());
    key.push(0xFF);
    key.extend_from_slice(stage.as_bytes());
    Some(key.into())
}

/// The item of one event's text at `start..end` of `buf`.
fn item_of(buf: &[u8], start: usize, end: usize) -> Item {
    let text = &buf[start..end];
    let mut a = 0;
    let mut b = text.len();
    while a < b && is_py_space(text[a]) {
        a += 1;
    }
    while b > a && is_py_space(text[b - 1]) {
        b -= 1;
    }
    // One line: `read_lines` cut it at its first new line, which the trim removed.
    let data = &text[a..b];
    debug_assert!(memchr(b'\n', data).is_none());
    let Ok(f) = read_event(data) else {
        return Item::Unsure(start, end);
    };
    ready(f, start + a, start + b, data).unwrap_or(Item::Unsure(start, end))
}

/// The item of an event read as *f* whose text (trimmed) is *data*, at `a..b` of its
/// buffer; `None` when the reference path must decide.
fn ready(f: View<'_>, a: usize, b: usize, data: &[u8]) -> Option<Item> {
    // A body: kept as it came only when the reference would neither strip it nor write
    // the event differently; anything else is the reference's to decide.
    if f.has_body() && (f.sensitive() || !canonical(data)) {
        return None;
    }
    let mut hashes = [0u32; 3];
    let mut count = 0;
    if f.has_ref {
        let (res, ns) = (f.resource.as_bytes(), f.namespace.as_bytes());
        hashes[0] = if f.name.is_empty() {
            crc(&[b"col:", res, b"/", ns])
        } else {
            crc(&[b"obj:", res, b"/", ns, b"/", f.name.as_bytes()])
        };
        count = 1;
        if !ns.is_empty() {
            hashes[1] = crc(&[b"ns:", ns]);
            count = 2;
        }
    }
    if let Some(name) = f.user.as_ref().and_then(|u| u.username.as_ref()) {
        hashes[count] = crc(&[b"user:", name.as_bytes()]);
        count += 1;
    }
    let time = if f.received.is_empty() {
        &f.stage_time
    } else {
        &f.received
    };
    Some(Item::Ready(Event {
        data: Data::Span(a, b),
        key: identity(&f.audit_id, &f.stage),
        hashes,
        count: count as u8,
        time: time.as_bytes().to_vec(),
        stripped: false,
        view: Packed::of(&f, data),
    }))
}

// ------------------------------------------------------------------------------ batches

/// One batch read by the fast reader; the events it was unsure about wait for `resolve`.
#[pyclass(module = "kustos._native")]
struct Batch {
    /// The text the spans point into (the Python bytes object, not copied).
    buf: Option<Py<PyBytes>>,
    items: Vec<Item>,
    /// Lines (or items) read.
    #[pyo3(get)]
    lines: usize,
}

impl Batch {
    fn text<'a>(&'a self, py: Python<'_>) -> &'a [u8] {
        match &self.buf {
            Some(buf) => buf.as_bytes(py),
            None => &[],
        }
    }
}

#[pymethods]
impl Batch {
    /// `(position, text)` of every event left to the reference path.
    fn unsure<'py>(&self, py: Python<'py>) -> Vec<(usize, Bound<'py, PyBytes>)> {
        let buf = self.text(py);
        self.items
            .iter()
            .enumerate()
            .filter_map(|(n, item)| match item {
                Item::Unsure(a, b) => Some((n, PyBytes::new(py, &buf[*a..*b]))),
                _ => None,
            })
            .collect()
    }

    /// Give the reference path's answer for the event at *position*: ``None`` (not an
    /// Event) or ``(data, auditID, stage, key hashes, time, stripped)``.
    #[pyo3(signature = (position, answer))]
    fn resolve(
        &mut self,
        position: usize,
        answer: Option<(Bound<'_, PyBytes>, String, String, Vec<u32>, String, bool)>,
    ) -> PyResult<()> {
        let slot = self
            .items
            .get_mut(position)
            .ok_or_else(|| PyValueError::new_err("no event at this position"))?;
        if !matches!(slot, Item::Unsure(..)) {
            return Err(PyValueError::new_err("this event needs no answer"));
        }
        *slot = match answer {
            None => Item::Skipped,
            Some((data, audit_id, stage, found, time, stripped)) => {
                if found.len() > 3 {
                    return Err(PyValueError::new_err("at most three key hashes"));
                }
                let mut hashes = [0u32; 3];
                hashes[..found.len()].copy_from_slice(&found);
                Item::Ready(Event {
                    data: Data::Owned(data.as_bytes().to_vec()),
                    key: identity(&audit_id, &stage),
                    hashes,
                    count: found.len() as u8,
                    time: time.into_bytes(),
                    stripped,
                    view: None, // the reference wrote it: the detectors read it themselves
                })
            }
        };
        Ok(())
    }

    /// A batch of *count* events all left to the reference path (its parser read them).
    #[staticmethod]
    fn pending(count: usize) -> Batch {
        Batch {
            buf: None,
            items: (0..count).map(|_| Item::Unsure(0, 0)).collect(),
            lines: count,
        }
    }

    /// Events in the batch (not counting texts found to be no Event).
    #[getter]
    fn events(&self) -> usize {
        self.items
            .iter()
            .filter(|i| !matches!(i, Item::Skipped))
            .count()
    }

    /// Texts found to be no Event.
    #[getter]
    fn skipped(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::Skipped))
            .count()
    }
}

/// The lines of *buf* from *start* to *end* (complete lines: see `cut_lines`), one event each.
#[pyfunction]
fn read_lines(buf: Bound<'_, PyBytes>, start: usize, end: usize) -> PyResult<Batch> {
    let text = buf.as_bytes();
    if start > end || end > text.len() {
        return Err(PyValueError::new_err("the lines are not inside the buffer"));
    }
    // The bytes object is immutable and held by `buf`: read without the GIL, so that the
    // receiver's event loop goes on meanwhile.
    let items = buf.py().allow_threads(|| {
        let mut items = Vec::with_capacity((end - start) / 900 + 1);
        let mut at = start;
        while at < end {
            let stop = match memchr(b'\n', &text[at..end]) {
                Some(n) => at + n + 1,
                None => end,
            };
            items.push(item_of(text, at, stop));
            at = stop;
        }
        items
    });
    let lines = items.len();
    Ok(Batch {
        buf: Some(buf.unbind()),
        items,
        lines,
    })
}

use memchr::memchr;

/// ``(end, lines)``: where the first *count* complete lines of *buf* from *start* end
/// (*start* if none) and how many there are.
#[pyfunction]
fn cut_lines(buf: &Bound<'_, PyBytes>, start: usize, count: usize) -> (usize, usize) {
    let text = buf.as_bytes();
    // Without the GIL, as the reading that follows: the writer's thread goes on meanwhile.
    buf.py().allow_threads(|| {
        let mut end = start.min(text.len());
        let mut found = 0;
        while found < count {
            match memchr(b'\n', &text[end..]) {
                Some(n) => end += n + 1,
                None => break,
            }
            found += 1;
        }
        (end, found)
    })
}

/// The items of an ``EventList`` body of ``audit.k8s.io``; ``None`` when the body is
/// anything else or the fast reader is unsure (the reference parser then answers).
#[pyfunction]
fn read_event_list(buf: Bound<'_, PyBytes>) -> Option<Batch> {
    let body = buf.as_bytes();
    let items = buf.py().allow_threads(|| event_list_items(body))?;
    let lines = items.len();
    Some(Batch {
        buf: Some(buf.unbind()),
        items,
        lines,
    })
}

fn event_list_items(body: &[u8]) -> Option<Vec<Item>> {
    let mut r = Reader::new(body);
    let mut items = Vec::new();
    let (mut kind_ok, mut version_ok) = (false, false);
    let mut seen = 0;
    r.ws();
    r.object(|r, key| match key {
        "kind" => {
            once(&mut seen, 1)?;
            kind_ok = r.string()? == "EventList";
            Ok(())
        }
        "apiVersion" => {
            once(&mut seen, 2)?;
            version_ok = r.string()?.starts_with("audit.k8s.io/");
            Ok(())
        }
        "items" => {
            once(&mut seen, 4)?;
            if r.null()? {
                // Each item read once, in place: its fields as `item_of` reads a line's,
                // nested as deep as the body allows; an item the fast reader is unsure
                // about is only skipped (a body it cannot skip is the reference's).
                r.array(|r| {
                    let start = r.i;
                    let mut event = Reader {
                        b: r.b,
                        i: start,
                        depth: r.depth,
                    };
                    let read = event_view(&mut event).ok().and_then(|f| {
                        let data = &r.b[start..event.i];
                        if memchr(b'\n', data).is_some() {
                            return None; // not a line of its own: written again
                        }
                        ready(f, start, event.i, data)
                    });
                    match read {
                        Some(item) => {
                            r.i = event.i;
                            items.push(item);
                        }
                        None => {
                            r.skip_value()?;
                            items.push(Item::Unsure(start, r.i));
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(())
        }
        _ => r.skip_value(),
    })
    .ok()?;
    r.ws();
    if r.i != body.len() || !kind_ok || !version_ok {
        return None;
    }
    Some(items)
}

// ------------------------------------------------------------------------------ dedupe

/// The identities (auditID, stage) of the latest records, oldest first.
#[pyclass(module = "kustos._native")]
struct Window {
    keys: HashSet<Key>,
    order: VecDeque<Key>,
    size: usize,
}

impl Window {
    fn add(&mut self, key: Key) {
        if self.keys.insert(Arc::clone(&key)) {
            self.order.push_back(key);
        }
    }

    /// Trimmed in bulk, as the Python window: past twice the size, keep the newest *size*.
    fn trim(&mut self) {
        if self.keys.len() > 2 * self.size {
            while self.order.len() > self.size {
                if let Some(old) = self.order.pop_front() {
                    self.keys.remove(&old);
                }
            }
        }
    }
}

#[pymethods]
impl Window {
    #[new]
    fn new(size: usize) -> Self {
        Window {
            keys: HashSet::new(),
            order: VecDeque::new(),
            size,
        }
    }

    fn __contains__(&self, key: (String, String)) -> bool {
        identity(&key.0, &key.1).is_some_and(|k| self.keys.contains(&k))
    }

    fn __len__(&self) -> usize {
        self.keys.len()
    }

    /// Remember *keys* (``(auditID, stage)``), in order.
    fn remember(&mut self, keys: Vec<(String, String)>) {
        for (audit_id, stage) in keys {
            if let Some(k) = identity(&audit_id, &stage) {
                self.add(k);
            }
        }
        self.trim();
    }

    /// Remember the identities of a committed batch (once it is durable).
    fn remember_commit(&mut self, py: Python<'_>, commit: &mut Commit) {
        let keys = std::mem::take(&mut commit.keys);
        py.allow_threads(|| {
            for key in keys {
                self.add(key);
            }
            self.trim();
        });
    }
}

// ------------------------------------------------------------------------------ commit

struct Row {
    bucket: u32,
    block: u64,
    min_time: Vec<u8>,
    max_time: Vec<u8>,
    entries: Vec<u8>,
}

/// A batch chained and formatted, not yet written: what the archive writes and indexes.
#[pyclass(module = "kustos._native")]
struct Commit {
    blob: Py<PyBytes>,
    /// The last record's number and chain hash after this batch.
    #[pyo3(get)]
    seq: u64,
    head: [u8; 32],
    /// Events stored of each batch.
    #[pyo3(get)]
    stored: Vec<usize>,
    #[pyo3(get)]
    repeated: usize,
    #[pyo3(get)]
    stripped: usize,
    /// Events stored with the view the reader made of them (the others' texts are read
    /// again by the detectors: the reference wrote them, or a string had an escape).
    #[pyo3(get)]
    viewed: usize,
    keys: Vec<Key>,
    spans: Vec<u8>,
    /// The stored events' views, in order (shared with the detector thread as they are).
    views: Arc<[Option<Packed>]>,
    rows: Vec<Row>,
}

#[pymethods]
impl Commit {
    /// The segment bytes to append.
    #[getter]
    fn blob(&self, py: Python<'_>) -> Py<PyBytes> {
        self.blob.clone_ref(py)
    }

    #[getter]
    fn head<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.head)
    }

    /// Where each stored event's text is in the blob: (start, end) as little-endian u32.
    #[getter]
    fn spans<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.spans)
    }

    /// The stored events' texts as one JSON array (what the detector process decodes).
    fn json_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let blob = self.blob.as_bytes(py);
        let pairs: Vec<(usize, usize)> = self
            .spans
            .chunks_exact(8)
            .map(|c| {
                let a = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
                let b = u32::from_le_bytes([c[4], c[5], c[6], c[7]]) as usize;
                (a, b)
            })
            .collect();
        let size = 2 + pairs.iter().map(|(a, b)| b - a + 1).sum::<usize>() - pairs.len().min(1);
        PyBytes::new_with(py, size, |out: &mut [u8]| {
            out[0] = b'[';
            let mut at = 1;
            for (n, &(a, b)) in pairs.iter().enumerate() {
                if n > 0 {
                    out[at] = b',';
                    at += 1;
                }
                out[at..at + b - a].copy_from_slice(&blob[a..b]);
                at += b - a;
            }
            out[at] = b']';
            Ok(())
        })
    }

    /// Posting rows as the index stores them: (bucket, block, min time, max time, entries).
    fn rows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.rows
            .iter()
            .map(|row| {
                let text = |t: &[u8]| String::from_utf8_lossy(t).into_owned();
                PyTuple::new(
                    py,
                    [
                        row.bucket.into_pyobject(py)?.into_any(),
                        row.block.into_pyobject(py)?.into_any(),
                        text(&row.min_time).into_pyobject(py)?.into_any(),
                        text(&row.max_time).into_pyobject(py)?.into_any(),
                        PyBytes::new(py, &row.entries).into_any(),
                    ],
                )
            })
            .collect()
    }
}

/// Chain, format and index *batches* after record *seq* with chain hash *head*, at
/// *offset* in the current segment, skipping identities in *window* or repeated.
#[pyfunction]
#[pyo3(signature = (batches, window, seq, head, offset, *, block, buckets))]
fn commit(
    py: Python<'_>,
    batches: Vec<PyRef<'_, Batch>>,
    window: &Window,
    seq: u64,
    head: &[u8],
    offset: usize,
    block: u64,
    buckets: u32,
) -> PyResult<Commit> {
    let mut head: [u8; 32] = head
        .try_into()
        .map_err(|_| PyValueError::new_err("a chain hash has 32 bytes"))?;
    if block == 0 || buckets == 0 {
        return Err(PyValueError::new_err("block and buckets must be positive"));
    }
    // First the events kept (repeats skipped) and the segment bytes they take, without
    // the GIL (the batches are not changed while they are committed: the archive's lock).
    let texts: Vec<&[u8]> = batches.iter().map(|b| b.text(py)).collect();
    let batches: Vec<&Batch> = batches.iter().map(|b| &**b).collect();
    let (kept, stored, repeated, keys) = py.allow_threads(|| {
        let mut kept: Vec<(&Event, &[u8])> = Vec::new();
        let mut stored = Vec::with_capacity(batches.len());
        let mut repeated = 0;
        let mut keys: Vec<Key> = Vec::new();
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for (batch, text) in batches.iter().zip(&texts) {
            let before = kept.len();
            for item in &batch.items {
                let ev = match item {
                    Item::Ready(ev) => ev,
                    Item::Skipped => continue,
                    Item::Unsure(..) => {
                        return Err(PyRuntimeError::new_err("an event was left unresolved"))
                    }
                };
                if let Some(key) = &ev.key {
                    if window.keys.contains(&**key) || !seen.insert(key) {
                        repeated += 1;
                        continue;
                    }
                    keys.push(Arc::clone(key));
                }
                let data: &[u8] = match &ev.data {
                    Data::Span(a, b) => &text[*a..*b],
                    Data::Owned(v) => v,
                };
                kept.push((ev, data));
            }
            stored.push(kept.len() - before);
        }
        Ok((kept, stored, repeated, keys))
    })?;
    let mut size = 0;
    for (n, (_, data)) in kept.iter().enumerate() {
        size += decimal_len(seq + 1 + n as u64) + 66 + data.len() + 1;
    }
    // Then chain, format and index them straight into the bytes to write.
    let views: Arc<[Option<Packed>]> = kept.iter().map(|(ev, _)| ev.view).collect();
    let mut stripped = 0;
    let mut spans: Vec<u8> = Vec::with_capacity(8 * kept.len());
    let mut rows: Vec<Row> = Vec::new();
    let mut where_: detect::FxMap<(u32, u64), usize> = detect::FxMap::default();
    let mut seq = seq;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut fill = |out: &mut [u8]| {
        let mut at = 0;
        for (ev, data) in &kept {
            seq += 1;
            let mut digest = Sha256::new();
            digest.update(head);
            digest.update(seq.to_be_bytes());
            digest.update(data);
            head = digest.finalize().into();
            let line_at = offset + at;
            let number = seq.to_string();
            out[at..at + number.len()].copy_from_slice(number.as_bytes());
            at += number.len();
            out[at] = b' ';
            at += 1;
            for byte in head {
                out[at] = HEX[(byte >> 4) as usize];
                out[at + 1] = HEX[(byte & 15) as usize];
                at += 2;
            }
            out[at] = b' ';
            at += 1;
            out[at..at + data.len()].copy_from_slice(data);
            spans.extend_from_slice(&(at as u32).to_le_bytes());
            at += data.len();
            spans.extend_from_slice(&(at as u32).to_le_bytes());
            out[at] = b'\n';
            at += 1;
            let blk = (seq - 1) / block;
            for &hashed in &ev.hashes[..ev.count as usize] {
                let place = (hashed % buckets, blk);
                let time = &ev.time;
                let row = match where_.get(&place) {
                    None => {
                        where_.insert(place, rows.len());
                        rows.push(Row {
                            bucket: place.0,
                            block: blk,
                            min_time: time.clone(),
                            max_time: time.clone(),
                            entries: Vec::new(),
                        });
                        rows.last_mut().expect("just pushed")
                    }
                    Some(&n) => {
                        let row = &mut rows[n];
                        if !time.is_empty() {
                            if time < &row.min_time || row.min_time.is_empty() {
                                row.min_time = time.clone();
                            }
                            if time > &row.max_time {
                                row.max_time = time.clone();
                            }
                        }
                        row
                    }
                };
                row.entries.extend_from_slice(&hashed.to_le_bytes());
                row.entries
                    .extend_from_slice(&(line_at as u32).to_le_bytes());
                row.entries.extend_from_slice(&(seq as i64).to_le_bytes());
            }
            stripped += ev.stripped as usize;
        }
        debug_assert_eq!(at, size);
    };
    // Written straight into the bytes object the archive appends (not yet shared: no other
    // thread can see it while the GIL is released).
    let blob = PyBytes::new_with(py, size, |out: &mut [u8]| {
        py.allow_threads(|| fill(out));
        Ok(())
    })?;
    Ok(Commit {
        blob: blob.unbind(),
        seq,
        head,
        stored,
        repeated,
        stripped,
        viewed: views.iter().filter(|v| v.is_some()).count(),
        keys,
        spans,
        views,
        rows,
    })
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Batch>()?;
    m.add_class::<Window>()?;
    m.add_class::<Commit>()?;
    m.add_class::<detect::Detector>()?;
    m.add_function(wrap_pyfunction!(read_lines, m)?)?;
    m.add_function(wrap_pyfunction!(cut_lines, m)?)?;
    m.add_function(wrap_pyfunction!(read_event_list, m)?)?;
    m.add_function(wrap_pyfunction!(commit, m)?)?;
    m.add_function(wrap_pyfunction!(credentials::detect_credential, m)?)?;
    m.add_function(wrap_pyfunction!(credentials::credential_key_class, m)?)?;
    Ok(())
}
