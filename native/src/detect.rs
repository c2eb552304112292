//! The detectors' per-event state machine (`kustos._native.Detector`).
//!
//! The same logic as `kustos.audit.detecting.Detector`, the reference, over a stored
//! batch: the views the archive's reader made of its events (`process_commit`: see
//! `crate::reader::Packed`), or its texts as one JSON array (`process`), read by the same
//! reader (`crate::reader::event_view`). The prefilter of routine requests, the learned
//! baselines (who read which Secret, from which addresses), the sliding windows (bulk
//! reads, denied bursts, exec sessions), the cooldowns and the alerts, with the same state
//! in the same order, so that the baseline saved from here is the one the reference would
//! save. What stays in Python, called
//! back: the ignore lists (globs, `fnmatch` semantics; answers cached here per principal)
//! and the time zone's offset (zoneinfo; cached per hour). An event this reader is not
//! sure about (a field of an unexpected type, a time not in the plain RFC 3339 form, a
//! repeated field, an escape it does not decode) stops the batch: Python syncs the state
//! and runs the reference on that event, then the batch goes on here.
//!
//! Errors never quote event content: they name positions only.

use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::reader::{event_view, Body, Packed, Reader, Unsure, View, R};
use crate::Commit;

// ------------------------------------------------------------------------------ hashing

/// The Fx hash (rustc's): a multiply and a rotate per word; the keys are names from
/// authenticated requests, and the tables are bounded, so SipHash's DoS margin is not
/// worth its cost here.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        let mut tail = 0u64;
        for (n, &b) in chunks.remainder().iter().enumerate() {
            tail |= u64::from(b) << (8 * n);
        }
        self.0 = (self.0.rotate_left(5) ^ tail ^ bytes.len() as u64).wrapping_mul(K);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<Fx>>;
/// A map with the Fx hash, for keys no client chooses (the archive's index places).
pub(crate) type FxMap<K, V> = HashMap<K, V>;
type HashSet<K> = std::collections::HashSet<K, BuildHasherDefault<Fx>>;

// ------------------------------------------------------------------------------ names

const FIRST_READ: usize = 0;
const NEW_IP: usize = 1;
const OFF_HOURS: usize = 2;
const BULK: usize = 3;
const ANONYMOUS: usize = 4;
const DENIED: usize = 5;
const EXEC: usize = 6;
const CHANGED: usize = 7;
const LEAK: usize = 8;
/// Detector names, in the order of the ignore bits (`1 << (1 + index)`).
const NAMES: [&str; 9] = [
    "first_secret_read",
    "new_source_ip",
    "off_hours",
    "bulk_read",
    "anonymous",
    "denied_burst",
    "exec_then_secret",
    "secret_changed",
    "policy_leak",
];
/// Ignore bit of the global list (platform identities).
const PLATFORM: u32 = 1;
/// Bit of `secret_changed.allow_users`.
const ALLOWED_WRITER: u32 = 1 << 10;
const SA: &str = "system:serviceaccount:";
const ANON_USER: &str = "system:anonymous";
const MAX_IDS: usize = 20;
const MAX_ADDRESSES: usize = 256;
const RECENT_IDS: usize = 4096;
const IGNORE_CACHE: usize = 1 << 16;
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

fn past(verb: &str) -> &str {
    match verb {
        "create" => "created",
        "update" => "updated",
        "patch" => "patched",
        "delete" => "deleted",
        "deletecollection" => "deleted a collection including",
        other => other,
    }
}

// ------------------------------------------------------------------------------ reading

/// The view of the item of a JSON array at `start` of *b*, and where it ends.
fn array_item(b: &[u8], start: usize) -> R<(View<'_>, usize)> {
    let mut r = Reader::new(b);
    r.i = start;
    let v = event_view(&mut r)?;
    Ok((v, r.i))
}

/// Where the JSON value starting at `i` ends (the texts are valid JSON: they were stored).
fn value_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    let n = memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
                    i += n;
                    if b[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
        if depth == 0 {
            // A scalar ends at a comma, a bracket or whitespace; a container just closed.
            while let Some(&c) = b.get(i) {
                if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            return Some(i);
        }
    }
}

// ------------------------------------------------------------------------------ time

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time in the plain form `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff][Z|+00:00]` (what API servers
/// write): microseconds since the epoch and the RFC 3339 stamp the reference writes
/// (`%Y-%m-%dT%H:%M:%S.%fZ` in UTC). Anything else is the reference's to parse.
fn parse_time(s: &str) -> R<i64> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> R<i64> {
        let part = b.get(from..from + n).ok_or(Unsure)?;
        let mut v = 0i64;
        for &c in part {
            if !c.is_ascii_digit() {
                return Err(Unsure);
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Ok(v)
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(Unsure);
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, se) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1000..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || se > 59
    {
        return Err(Unsure);
    }
    let mut at = 19;
    let mut micro = 0;
    if b.get(at) == Some(&b'.') {
        let n = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        micro = match n {
            3 => digits(at + 1, 3)? * 1000,
            6 => digits(at + 1, 6)?,
            _ => return Err(Unsure),
        };
        at += 1 + n;
    }
    match &b[at..] {
        b"" | b"Z" | b"+00:00" => {}
        _ => return Err(Unsure),
    }
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    Ok(seconds * 1_000_000 + micro)
}

/// Epoch seconds as Python's `datetime.timestamp()` gives them (correctly rounded).
fn seconds_of(micros: i64) -> f64 {
    micros as f64 / 1e6
}

// ------------------------------------------------------------------------------ state

/// A map that keeps insertion order (a Python dict): a new key goes last, an existing
/// key keeps its place when set again.
struct Ordered<V> {
    index: HashMap<String, usize>,
    items: Vec<(String, V)>,
}

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered {
            index: HashMap::default(),
            items: Vec::new(),
        }
    }
}

impl<V> Ordered<V> {
    fn get(&self, key: &str) -> Option<&V> {
        self.index.get(key).map(|&n| &self.items[n].1)
    }

    fn set(&mut self, key: &str, value: V) {
        match self.index.get(key) {
            Some(&n) => self.items[n].1 = value,
            None => {
                self.index.insert(key.to_owned(), self.items.len());
                self.items.push((key.to_owned(), value));
            }
        }
    }

    fn entry(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let n = match self.index.get(key) {
            Some(&n) => n,
            None => {
                let n = self.items.len();
                self.index.insert(key.to_owned(), n);
                self.items.push((key.to_owned(), make()));
                n
            }
        };
        &mut self.items[n].1
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn retain(&mut self, keep: impl Fn(&V) -> bool) {
        self.items.retain(|(_, v)| keep(v));
        self.index = self
            .items
            .iter()
            .enumerate()
            .map(|(n, (k, _))| (k.clone(), n))
            .collect();
    }
}

/// An `OrderedDict` of key → (time, audit id) whose order is recency (`move_to_end`).
#[derive(Default)]
struct Recency {
    map: HashMap<String, (f64, String, u64)>,
    order: VecDeque<(String, u64)>,
    tick: u64,
}

impl Recency {
    fn touch(&mut self, key: &str, time: f64, id: &str) {
        self.tick += 1;
        self.map
            .insert(key.to_owned(), (time, id.to_owned(), self.tick));
        self.order.push_back((key.to_owned(), self.tick));
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, t)| map.get(k).is_some_and(|e| e.2 == *t));
        }
    }

    fn oldest(&mut self) -> Option<(&str, f64)> {
        while let Some((key, tick)) = self.order.front() {
            match self.map.get(key) {
                Some(e) if e.2 == *tick => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
        let (key, _) = self.order.front()?;
        Some((key.as_str(), self.map[key].0))
    }

    fn pop_oldest(&mut self) {
        if let Some((key, _)) = self.order.pop_front() {
            self.map.remove(&key);
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// (key, time, audit id), least recent first.
    fn items(&self) -> impl Iterator<Item = (&str, f64, &str)> {
        self.order.iter().filter_map(|(k, t)| {
            let e = self.map.get(k)?;
            (e.2 == *t).then_some((k.as_str(), e.0, e.1.as_str()))
        })
    }
}

type Session = (f64, String, String, String);

/// A principal's addresses, oldest first, and the same as a set.
#[derive(Default)]
struct Known {
    list: Vec<String>,
    set: HashSet<String>,
}

#[derive(Default)]
struct State {
    started: Option<i64>,
    last_seq: i64,
    /// Length-prefixed (user, namespace, name): one allocation per lookup.
    readers: HashSet<String>,
    addresses: Ordered<Known>,
    windows: Ordered<Ordered<VecDeque<(f64, String, String)>>>,
    distinct: Ordered<Ordered<Recency>>,
    sessions: Ordered<Session>,
    cooldowns: Ordered<f64>,
    /// One allocation per ID, shared by the set and the order.
    recent: HashSet<Arc<str>>,
    recent_order: VecDeque<Arc<str>>,
    prune_at: usize,
    sessions_at: usize,
}

fn reader_key(user: &str, namespace: &str, name: &str) -> String {
    let mut key = String::with_capacity(user.len() + namespace.len() + name.len() + 24);
    for part in [user, namespace] {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    key.push_str(name);
    key
}

fn reader_parts(key: &str) -> Option<(&str, &str, &str)> {
    let mut rest = key;
    let mut parts = [""; 2];
    for part in &mut parts {
        let (len, tail) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        *part = tail.get(..len)?;
        rest = &tail[len..];
    }
    Some((parts[0], parts[1], rest))
}

// ------------------------------------------------------------------------------ requests

/// `kustos.audit.detecting.Request`: what one counted event says.
struct Request<'a> {
    audit_id: &'a str,
    micros: i64,
    /// The time's text (its first 19 bytes are the UTC date and time: see `parse_time`).
    when: &'a str,
    user: &'a str,
    /// One of the user's groups is `system:unauthenticated`.
    anonymous: bool,
    impersonator: Option<&'a str>,
    verb: &'a str,
    resource: &'a str,
    subresource: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    source_ip: Option<&'a str>,
    code: Option<i64>,
    uri: &'a str,
    pod: Option<&'a str>,
    stripped: bool,
    has_body: bool,
}

impl Request<'_> {
    fn allowed(&self) -> bool {
        self.code.is_none_or(|c| c < 400)
    }
    fn denied(&self) -> bool {
        matches!(self.code, Some(401 | 403))
    }
    fn is_secret(&self) -> bool {
        self.resource == "secrets" && self.subresource.is_empty()
    }
    fn now(&self) -> f64 {
        seconds_of(self.micros)
    }
    /// The time as the reference writes it: `%Y-%m-%dT%H:%M:%S.%fZ` in UTC.
    fn stamp(&self) -> String {
        format!(
            "{}.{:06}Z",
            &self.when[..19],
            self.micros.rem_euclid(1_000_000)
        )
    }
    fn who(&self) -> String {
        match self.impersonator {
            Some(by) if !by.is_empty() => format!("{} (impersonated by {by})", self.user),
            _ => self.user.to_owned(),
        }
    }
    fn label(&self) -> String {
        label(self.namespace, self.name)
    }
    fn reading(&self) -> String {
        if let Some(name) = self.name {
            return format!("read Secret {}/{name}", self.namespace.unwrap_or("-"));
        }
        let verb = match self.verb {
            "list" => "listed",
            "watch" => "watched",
            other => other,
        };
        match self.namespace {
            Some(ns) => format!("{verb} the Secrets of namespace {ns}"),
            None => format!("{verb} the Secrets of every namespace"),
        }
    }
}

fn label(namespace: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", namespace.unwrap_or("*"), name.unwrap_or("*"))
}

/// Whether *text* matches *glob* as `fnmatch` does (case-sensitive, anchored, `*` any
/// run of characters, newlines included, `?` one character; no `[...]` classes: those
/// globs are left to Python).
fn glob_match(glob: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut g, mut t) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                retry = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match retry {
                Some((star, at)) => {
                    g = star + 1;
                    t = at + 1;
                    retry = Some((star, at + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

/// `^/(healthz|livez|readyz|version|openapi)(/|$|\?)` as Python's `re.match` reads it
/// (`$` also matches before a final newline).
fn health(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix('/') else {
        return false;
    };
    for word in ["healthz", "livez", "readyz", "version", "openapi"] {
        if let Some(tail) = rest.strip_prefix(word) {
            if tail.is_empty() || tail == "\n" || tail.starts_with('/') || tail.starts_with('?') {
                return true;
            }
        }
    }
    false
}

struct Alert {
    detector: usize,
    time: String,
    user: String,
    source_ip: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    audit_ids: Vec<String>,
    message: String,
}

// ------------------------------------------------------------------------------ detector

/// The detectors over one state; see the module's documentation.
#[pyclass(module = "kustos._native")]
pub(crate) struct Detector {
    classify: Py<PyAny>,
    zone_offset: Py<PyAny>,
    learning: i64,
    cooldown: f64,
    bulk_window: f64,
    denied_window: f64,
    exec_window: f64,
    enabled: [bool; 9],
    severities: Vec<String>,
    new_ip_service_accounts: bool,
    off_hours_service_accounts: bool,
    hours: (i64, i64),
    days: Vec<i64>,
    off_hours_suffix: String,
    bulk_secrets: usize,
    bulk_namespaces: usize,
    cluster_wide: bool,
    bulk_window_text: String,
    denied_threshold: usize,
    denied_window_text: String,
    exec_window_text: String,
    operator: String,
    ignore: HashMap<String, u32>,
    /// UTC hour → the zone's offset in seconds through that hour (`None`: it changes).
    offsets: HashMap<i64, Option<i64>>,
    /// The ignore bits of the event's principal (every check is about it).
    current: u32,
    /// (bit, globs) of each ignore list, when every glob is plain (`*`, `?` and
    /// literal characters); else `classify` answers.
    globs: Option<Vec<(u32, Vec<Vec<char>>)>>,
    state: State,
}

impl Detector {
    /// The ignore bits of *user*; `classify` is called with the GIL taken back (the
    /// batch runs without it).
    fn bits(&mut self, user: &str) -> PyResult<u32> {
        if let Some(&bits) = self.ignore.get(user) {
            return Ok(bits);
        }
        let bits: u32 = match &self.globs {
            Some(lists) => lists
                .iter()
                .filter(|(_, globs)| globs.iter().any(|g| glob_match(g, user)))
                .fold(0, |bits, (bit, _)| bits | bit),
            None => Python::with_gil(|py| self.classify.call1(py, (user,))?.extract(py))?,
        };
        if self.ignore.len() > IGNORE_CACHE {
            self.ignore.clear();
        }
        self.ignore.insert(user.to_owned(), bits);
        Ok(bits)
    }

    /// Whether the event's principal is on *detector*'s ignore list.
    fn ignored(&self, detector: usize) -> bool {
        self.current & (1 << (1 + detector)) != 0
    }

    /// The zone's offset (seconds) at epoch second *second* (`zone_offset` is called with
    /// the GIL taken back).
    fn offset(&mut self, second: i64) -> PyResult<i64> {
        let hour = second.div_euclid(3600);
        if let Some(&Some(offset)) = self.offsets.get(&hour) {
            return Ok(offset);
        }
        if !self.offsets.contains_key(&hour) {
            let (offset, steady): (i64, bool) = Python::with_gil(|py| {
                self.zone_offset.call1(py, (hour * 3600, true))?.extract(py)
            })?;
            if self.offsets.len() > 4096 {
                self.offsets.clear();
            }
            self.offsets.insert(hour, steady.then_some(offset));
            if steady {
                return Ok(offset);
            }
        }
        let (offset, _): (i64, bool) =
            Python::with_gil(|py| self.zone_offset.call1(py, (second, false))?.extract(py))?;
        Ok(offset)
    }

    fn alert(&self, req: &Request<'_>, detector: usize, message: String) -> Alert {
        Alert {
            detector,
            time: req.stamp(),
            user: req.user.to_owned(),
            source_ip: req.source_ip.map(str::to_owned),
            namespace: req.namespace.map(str::to_owned),
            name: req.name.map(str::to_owned),
            audit_ids: vec![req.audit_id.to_owned()],
            message,
        }
    }

    fn limited(
        &mut self,
        req: &Request<'_>,
        detector: usize,
        key: &str,
        alert: Alert,
        out: &mut Vec<Alert>,
    ) {
        let slot = format!("{}\x00{}\x00{key}", NAMES[detector], req.user);
        let now = req.now();
        let cooldowns = &mut self.state.cooldowns;
        if let Some(&last) = cooldowns.get(&slot) {
            if now - last < self.cooldown {
                return;
            }
        }
        cooldowns.set(&slot, now);
        if cooldowns.len() > self.state.prune_at {
            let horizon = now - self.cooldown;
            cooldowns.retain(|&v| v > horizon);
            self.state.prune_at = RECENT_IDS.max(2 * cooldowns.len());
        }
        out.push(alert);
    }

    fn first_time(&mut self, audit_id: &str) -> bool {
        let s = &mut self.state;
        if s.recent.contains(audit_id) {
            return false;
        }
        let id: Arc<str> = Arc::from(audit_id);
        s.recent.insert(Arc::clone(&id));
        s.recent_order.push_back(id);
        if s.recent_order.len() > RECENT_IDS {
            if let Some(old) = s.recent_order.pop_front() {
                s.recent.remove(&*old);
            }
        }
        true
    }

    /// `Detector._routine`.
    fn routine(&self, v: &View<'_>) -> PyResult<bool> {
        let acting = v.acting.as_ref();
        let user = match acting {
            Some(a) if a.username.as_deref().is_some_and(|n| !n.is_empty()) => Some(a),
            _ => v.user.as_ref(),
        };
        let Some(user) = user else { return Ok(false) };
        let Some(name) = user.username.as_deref() else {
            return Ok(false);
        };
        if !v.has_ref {
            return Ok(false);
        }
        if v.code == Some(401) || v.stripped {
            return Ok(false);
        }
        let has_body = v.request_body != Body::Unset || v.response_body != Body::Unset;
        if self.current & PLATFORM != 0 {
            return Ok(v.resource != "secrets" || (is_read(&v.verb) && !has_body));
        }
        if v.resource == "secrets" || has_body || acting.is_some() {
            return Ok(false);
        }
        if v.code.is_some_and(|c| c >= 400) {
            return Ok(false);
        }
        if v.resource == "pods" && (v.subresource == "exec" || v.subresource == "attach") {
            return Ok(false);
        }
        if name == ANON_USER || user.anonymous {
            return Ok(false);
        }
        let watched = self.new_ip_service_accounts || !name.starts_with(SA);
        Ok(!(self.enabled[NEW_IP] && watched))
    }

    /// `request_of`: `Ok(None)` for a stage or shape the detectors do not count.
    fn request<'a>(v: &'a View<'a>) -> R<Option<Request<'a>>> {
        if !matches!(&*v.stage, "ResponseStarted" | "ResponseComplete" | "Panic")
            || v.audit_id.is_empty()
        {
            return Ok(None);
        }
        let mut when = None;
        for text in [&v.received, &v.stage_time, &v.timestamp] {
            if !text.is_empty() {
                when = Some(text);
                break;
            }
        }
        if when.is_none() {
            if let Some(created) = &v.created {
                if !created.is_empty() {
                    when = Some(created);
                }
            }
        }
        let Some(when) = when else { return Ok(None) };
        let micros = parse_time(when)?;
        let mut user = v.user.as_ref();
        let mut impersonator = None;
        if let Some(acting) = &v.acting {
            if acting.username.as_deref().is_some_and(|n| !n.is_empty()) {
                impersonator = user.and_then(|u| u.username.as_deref());
                user = Some(acting);
            }
        }
        Ok(Some(Request {
            audit_id: &v.audit_id,
            micros,
            when,
            user: user.and_then(|u| u.username.as_deref()).unwrap_or(""),
            anonymous: user.is_some_and(|u| u.anonymous),
            impersonator,
            verb: &v.verb,
            resource: &v.resource,
            subresource: &v.subresource,
            namespace: (!v.namespace.is_empty()).then_some(&*v.namespace),
            name: (!v.name.is_empty()).then_some(&*v.name),
            source_ip: v.last_ip.as_deref().filter(|ip| !ip.is_empty()),
            code: v.code,
            uri: &v.uri,
            pod: user.and_then(|u| u.pod.as_deref()),
            stripped: v.stripped,
            has_body: v.request_body == Body::Object || v.response_body == Body::Object,
        }))
    }

    /// `Detector._observe` of one counted request.
    fn observe(&mut self, req: &Request<'_>, out: &mut Vec<Alert>) -> PyResult<()> {
        if !self.first_time(req.audit_id) {
            return Ok(());
        }
        let started = *self.state.started.get_or_insert(req.micros);
        let learning = req.micros - started < self.learning;
        let platform = self.current & PLATFORM != 0;
        if self.enabled[LEAK] && (req.stripped || (req.is_secret() && req.has_body)) {
            let what = if req.is_secret() {
                req.label()
            } else {
                req.resource.to_owned()
            };
            let resource = if req.resource.is_empty() {
                "objects"
            } else {
                req.resource
            };
            let message = format!(
                "the audit policy logs request or response bodies of {resource} ({} {what}); \
                 the receiver stripped them: log Secrets at Metadata level",
                req.verb
            );
            let alert = self.alert(req, LEAK, message);
            self.limited(req, LEAK, req.resource, alert, out);
        }
        let anonymous = (req.user == ANON_USER || req.anonymous || req.code == Some(401))
            && (!req.resource.is_empty() || !health(req.uri));
        if self.enabled[ANONYMOUS] && anonymous && !self.ignored(ANONYMOUS) {
            let target = if req.resource.is_empty() {
                req.uri.split('?').next().unwrap_or("")
            } else {
                req.resource
            };
            let outcome = if req.code == Some(401) {
                "failed authentication".to_owned()
            } else if req.allowed() {
                "was allowed".to_owned()
            } else {
                format!("was refused ({})", req.code.unwrap_or_default())
            };
            let verb = if req.verb.is_empty() {
                "request"
            } else {
                req.verb
            };
            let alert = self.alert(
                req,
                ANONYMOUS,
                format!("unauthenticated {verb} on {target} {outcome}"),
            );
            self.limited(req, ANONYMOUS, req.source_ip.unwrap_or(""), alert, out);
        }
        if self.enabled[CHANGED] && req.is_secret() && is_write(req.verb) {
            self.changed(req, out)?;
        }
        if platform {
            return Ok(());
        }
        if self.enabled[DENIED] && req.denied() && !anonymous {
            self.denied(req, out)?;
        }
        if self.enabled[NEW_IP] {
            self.new_address(req, out, learning)?;
        }
        if self.enabled[EXEC] && req.resource == "pods" && req.allowed() {
            self.remember_exec(req)?;
        }
        if !(req.is_secret() && is_read(req.verb) && req.allowed()) {
            return Ok(());
        }
        if self.enabled[FIRST_READ] {
            self.first_read(req, out, learning)?;
        }
        if self.enabled[OFF_HOURS] {
            self.off_hours(req, out)?;
        }
        if self.enabled[BULK] {
            self.bulk(req, out)?;
        }
        if self.enabled[EXEC] {
            self.after_exec(req, out);
        }
        Ok(())
    }

    fn changed(&mut self, req: &Request<'_>, out: &mut Vec<Alert>) -> PyResult<()> {
        if !req.allowed() || req.user == self.operator {
            return Ok(());
        }
        if self.current & ALLOWED_WRITER != 0 || self.ignored(CHANGED) {
            return Ok(());
        }
        let message = format!(
            "{} {} Secret {} (not the rotation operator nor an allowed writer)",
            req.who(),
            past(req.verb),
            req.label()
        );
        out.push(self.alert(req, CHANGED, message));
        Ok(())
    }

    fn denied(&mut self, req: &Request<'_>, out: &mut Vec<Alert>) -> PyResult<()> {
        if self.ignored(DENIED) {
            return Ok(());
        }
        let now = req.now();
        let span = self.denied_window;
        let key = if req.resource.is_empty() {
            req.uri
        } else {
            req.resource
        };
        let entries = self
            .state
            .windows
            .entry(NAMES[DENIED], Ordered::default)
            .entry(req.user, VecDeque::new);
        entries.push_back((now, key.to_owned(), req.audit_id.to_owned()));
        while entries.front().is_some_and(|e| e.0 <= now - span) {
            entries.pop_front();
        }
        if entries.len() < self.denied_threshold {
            return Ok(());
        }
        let count = entries.len();
        let ids: Vec<String> = entries.iter().take(MAX_IDS).map(|e| e.2.clone()).collect();
        let message = format!(
            "{} was refused {count} requests within {}",
            req.who(),
            self.denied_window_text
        );
        let mut alert = self.alert(req, DENIED, message);
        alert.audit_ids = ids;
        alert.namespace = None;
        alert.name = None;
        self.limited(req, DENIED, "", alert, out);
        Ok(())
    }

    fn new_address(
        &mut self,
        req: &Request<'_>,
        out: &mut Vec<Alert>,
        learning: bool,
    ) -> PyResult<()> {
        let Some(ip) = req.source_ip else {
            return Ok(());
        };
        if req.user.is_empty() || self.ignored(NEW_IP) {
            return Ok(());
        }
        if req.user.starts_with(SA) && !self.new_ip_service_accounts {
            return Ok(());
        }
        let entry = self.state.addresses.entry(req.user, Known::default);
        if entry.set.contains(ip) {
            return Ok(());
        }
        let known = &mut entry.list;
        let first_ever = known.is_empty();
        known.push(ip.to_owned());
        entry.set.insert(ip.to_owned());
        if known.len() > MAX_ADDRESSES {
            let old = known.remove(0);
            if !known.contains(&old) {
                entry.set.remove(&old);
            }
        }
        if learning || first_ever {
            return Ok(());
        }
        let n = known.len();
        let shown = known[n.saturating_sub(4)..n - 1].join(", ");
        let message = format!(
            "{} called from {ip}, never seen for it (known: {shown})",
            req.who()
        );
        out.push(self.alert(req, NEW_IP, message));
        Ok(())
    }

    fn first_read(
        &mut self,
        req: &Request<'_>,
        out: &mut Vec<Alert>,
        learning: bool,
    ) -> PyResult<()> {
        let (Some(name), Some(namespace)) = (req.name, req.namespace) else {
            return Ok(());
        };
        if self.ignored(FIRST_READ) {
            return Ok(());
        }
        if !self
            .state
            .readers
            .insert(reader_key(req.user, namespace, name))
            || learning
        {
            return Ok(());
        }
        let message = format!(
            "{} read Secret {namespace}/{name} ({}) for the first time",
            req.who(),
            req.verb
        );
        out.push(self.alert(req, FIRST_READ, message));
        Ok(())
    }

    fn off_hours(&mut self, req: &Request<'_>, out: &mut Vec<Alert>) -> PyResult<()> {
        if self.ignored(OFF_HOURS) {
            return Ok(());
        }
        if req.user.starts_with(SA) && !self.off_hours_service_accounts {
            return Ok(());
        }
        let second = req.micros.div_euclid(1_000_000);
        let local = second + self.offset(second)?;
        let days = local.div_euclid(86_400);
        let minute = local.rem_euclid(86_400) / 60;
        let weekday = (days + 3).rem_euclid(7);
        let (start, end) = self.hours;
        let inside = if start <= end {
            start <= minute && minute < end
        } else {
            minute >= start || minute < end
        };
        if inside && self.days.contains(&weekday) {
            return Ok(());
        }
        let message = format!(
            "{} {} at {} {:02}:{:02} {}",
            req.who(),
            req.reading(),
            DAYS[weekday as usize],
            minute / 60,
            minute % 60,
            self.off_hours_suffix
        );
        let alert = self.alert(req, OFF_HOURS, message);
        self.limited(req, OFF_HOURS, &req.label(), alert, out);
        Ok(())
    }

    fn distinct(&mut self, detector: &str, req: &Request<'_>, key: &str) -> &mut Recency {
        let now = req.now();
        let span = self.bulk_window;
        let seen = self
            .state
            .distinct
            .entry(detector, Ordered::default)
            .entry(req.user, Recency::default);
        seen.touch(key, now, req.audit_id);
        let horizon = now - span;
        while let Some((_, time)) = seen.oldest() {
            if time > horizon {
                break;
            }
            seen.pop_oldest();
        }
        seen
    }

    fn bulk(&mut self, req: &Request<'_>, out: &mut Vec<Alert>) -> PyResult<()> {
        if self.ignored(BULK) {
            return Ok(());
        }
        if (req.verb == "list" || req.verb == "watch") && req.name.is_none() {
            if req.namespace.is_none() && self.cluster_wide {
                let alert = self.alert(req, BULK, format!("{} {}", req.who(), req.reading()));
                self.limited(req, BULK, "cluster", alert, out);
                return Ok(());
            }
            let threshold = self.bulk_namespaces;
            let spaces = self.distinct("bulk_namespaces", req, req.namespace.unwrap_or(""));
            if spaces.len() >= threshold {
                let count = spaces.len();
                let ids: Vec<String> = spaces
                    .items()
                    .take(MAX_IDS)
                    .map(|e| e.2.to_owned())
                    .collect();
                let message = format!(
                    "{} listed Secrets in {count} namespaces within {}",
                    req.who(),
                    self.bulk_window_text
                );
                let mut alert = self.alert(req, BULK, message);
                alert.audit_ids = ids;
                alert.namespace = None;
                self.limited(req, BULK, "namespaces", alert, out);
            }
            return Ok(());
        }
        let threshold = self.bulk_secrets;
        let (count, ids, one) = {
            let names = self.distinct("bulk_secrets", req, &req.label());
            if names.len() < threshold {
                return Ok(());
            }
            let ids: Vec<String> = names
                .items()
                .take(MAX_IDS)
                .map(|e| e.2.to_owned())
                .collect();
            let mut spaces = names.items().map(|e| e.0.split('/').next().unwrap_or(""));
            let first = spaces.next();
            let one = spaces.all(|s| Some(s) == first);
            (names.len(), ids, one)
        };
        {
            let message = format!(
                "{} read {count} distinct Secrets within {}",
                req.who(),
                self.bulk_window_text
            );
            let mut alert = self.alert(req, BULK, message);
            alert.audit_ids = ids;
            alert.name = None;
            if !one {
                alert.namespace = None;
            }
            self.limited(req, BULK, "secrets", alert, out);
        }
        Ok(())
    }

    fn remember_exec(&mut self, req: &Request<'_>) -> PyResult<()> {
        if !(req.subresource == "exec" || req.subresource == "attach") || self.ignored(EXEC) {
            return Ok(());
        }
        let pod = format!(
            "{}/{}",
            req.namespace.unwrap_or("None"),
            req.name.unwrap_or("None")
        );
        let now = req.now();
        let session: Session = (
            now,
            req.audit_id.to_owned(),
            req.user.to_owned(),
            pod.clone(),
        );
        let sessions = &mut self.state.sessions;
        sessions.set(&format!("user\x00{}", req.user), session.clone());
        sessions.set(&format!("pod\x00{pod}"), session);
        let horizon = now - self.exec_window;
        if sessions.len() > self.state.sessions_at {
            sessions.retain(|v| v.0 > horizon);
            self.state.sessions_at = RECENT_IDS.max(2 * sessions.len());
        }
        Ok(())
    }

    fn after_exec(&mut self, req: &Request<'_>, out: &mut Vec<Alert>) {
        let now = req.now();
        let mut candidates = vec![self
            .state
            .sessions
            .get(&format!("user\x00{}", req.user))
            .cloned()];
        if let Some(pod) = req.pod {
            if req.user.starts_with(SA) {
                let namespace = req.user.split(':').nth(2).unwrap_or("");
                candidates.push(
                    self.state
                        .sessions
                        .get(&format!("pod\x00{namespace}/{pod}"))
                        .cloned(),
                );
            }
        }
        for session in candidates.into_iter().flatten() {
            let age = now - session.0;
            if !(0.0 <= age && age <= self.exec_window) {
                continue;
            }
            let (_, exec_id, execer, pod) = session;
            let via = if execer == req.user {
                String::new()
            } else {
                format!(" from inside pod {pod} (exec by {execer})")
            };
            let message = format!(
                "{} {}{via} within {} of an exec into {pod}",
                req.who(),
                req.reading(),
                self.exec_window_text
            );
            let mut alert = self.alert(req, EXEC, message);
            alert.audit_ids = vec![exec_id, req.audit_id.to_owned()];
            self.limited(req, EXEC, &req.label(), alert, out);
            return;
        }
    }

    /// The first reads, as (user, namespace, name), sorted as Python sorts the tuples
    /// (UTF-8 keeps code point order).
    fn sorted_readers(&self) -> PyResult<Vec<(&str, &str, &str)>> {
        let mut sorted = self
            .state
            .readers
            .iter()
            .map(|key| reader_parts(key).ok_or_else(|| PyValueError::new_err("a reader key")))
            .collect::<PyResult<Vec<_>>>()?;
        sorted.sort_unstable();
        Ok(sorted)
    }

    /// The alerts as lines of ``alerts.jsonl``: byte for byte what
    /// ``orjson.dumps(Alert.to_json())`` writes.
    fn alert_lines(&self, alerts: &[Alert]) -> Vec<u8> {
        let mut out = Vec::with_capacity(alerts.len() * 320);
        for a in alerts {
            out.extend_from_slice(b"{\"detector\":");
            json_str(&mut out, NAMES[a.detector]);
            out.extend_from_slice(b",\"severity\":");
            json_str(&mut out, &self.severities[a.detector]);
            out.extend_from_slice(b",\"time\":");
            json_str(&mut out, &a.time);
            out.extend_from_slice(b",\"user\":");
            json_str(&mut out, &a.user);
            for (key, value) in [
                (&b",\"source_ip\":"[..], &a.source_ip),
                (b",\"namespace\":", &a.namespace),
                (b",\"name\":", &a.name),
            ] {
                out.extend_from_slice(key);
                match value {
                    Some(text) => json_str(&mut out, text),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.extend_from_slice(b",\"audit_ids\":[");
            for (n, id) in a.audit_ids.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                json_str(&mut out, id);
            }
            out.extend_from_slice(b"],\"message\":");
            json_str(&mut out, &a.message);
            out.extend_from_slice(b"}\n");
        }
        out
    }

    fn answer(&self, alerts: &[Alert], stop: Option<(i64, usize, usize)>) -> Ran {
        (self.alert_lines(alerts), alerts.len(), stop)
    }

    /// The detectors over the event *seq* read as *view*; `false` (nothing done) when the
    /// reference must run it.
    fn event(&mut self, seq: i64, view: &View<'_>, out: &mut Vec<Alert>) -> PyResult<bool> {
        let Ok(request) = Self::request(view) else {
            return Ok(false);
        };
        self.state.last_seq = seq;
        let acting = view
            .acting
            .as_ref()
            .filter(|a| a.username.as_deref().is_some_and(|n| !n.is_empty()));
        let name = acting
            .or(view.user.as_ref())
            .and_then(|u| u.username.as_deref())
            .unwrap_or("");
        self.current = self.bits(name)?;
        if self.state.started.is_none() || !self.routine(view)? {
            if let Some(req) = request {
                self.observe(&req, out)?;
            }
        }
        Ok(true)
    }

    /// `process_commit` without the GIL: the events of *blob* at *spans* (start and end as
    /// little-endian u32), viewed by the writer (*views*) or read here, from item *index*.
    fn run_commit(
        &mut self,
        blob: &[u8],
        spans: &[u8],
        views: &[Option<Packed>],
        first_seq: i64,
        index: usize,
    ) -> PyResult<Ran> {
        let mut out = Vec::new();
        let ends = spans.chunks_exact(8).map(|c| {
            let a = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
            let b = u32::from_le_bytes([c[4], c[5], c[6], c[7]]) as usize;
            (a, b)
        });
        for (n, ((start, end), packed)) in ends.zip(views).enumerate().skip(index) {
            let seq = first_seq + n as i64;
            if seq <= self.state.last_seq {
                continue; // seen before a restart
            }
            let text = blob
                .get(start..end)
                .ok_or_else(|| PyValueError::new_err(format!("no stored event {n}")))?;
            let view = match packed {
                Some(packed) => packed.view(text),
                None => crate::reader::read_event(text),
            };
            let stop = Some((n as i64, start, end));
            let Ok(view) = view else {
                return Ok(self.answer(&out, stop));
            };
            if !self.event(seq, &view, &mut out)? {
                return Ok(self.answer(&out, stop));
            }
        }
        Ok(self.answer(&out, None))
    }

    /// `process` without the GIL: the alert lines, how many, where it stopped.
    fn run(&mut self, b: &[u8], first_seq: i64, offset: usize, index: i64) -> PyResult<Ran> {
        let bad = |at: usize| PyValueError::new_err(format!("not an array of events at byte {at}"));
        let mut r = Reader::new(b);
        r.i = offset;
        let mut index = index;
        let mut out = Vec::new();
        let mut first = index == 0;
        if first {
            r.ws();
            r.expect(b'[').map_err(|_| bad(r.i))?;
        }
        loop {
            r.ws();
            match b.get(r.i) {
                Some(b']') => break,
                Some(b',') if !first => {
                    r.i += 1;
                    r.ws();
                }
                Some(_) if first => {}
                _ => return Err(bad(r.i)),
            }
            first = false;
            let start = r.i;
            let seq = first_seq + index;
            let read = if seq > self.state.last_seq {
                array_item(b, start).ok()
            } else {
                None
            };
            let Some((view, end)) = read else {
                let end = value_end(b, start).ok_or_else(|| bad(start))?;
                if seq > self.state.last_seq {
                    return Ok(self.answer(&out, Some((index, start, end))));
                }
                r.i = end;
                index += 1;
                continue;
            };
            if !self.event(seq, &view, &mut out)? {
                return Ok(self.answer(&out, Some((index, start, end))));
            }
            r.i = end;
            index += 1;
        }
        Ok(self.answer(&out, None))
    }
}

/// What `run` gives back: the alert lines, how many, where it stopped.
type Ran = (Vec<u8>, usize, Option<(i64, usize, usize)>);

/// What `process` gives back: the alert lines, how many, where it stopped.
type Processed<'py> = (Bound<'py, PyBytes>, usize, Option<(i64, usize, usize)>);

/// *s* as a JSON string the way orjson writes it: `"` and `\\` escaped, the short
/// escapes for backspace, tab, newline, form feed and carriage return, `\\u00xx` for the
/// other control characters, everything else as it is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    // Runs of bytes that need no escape are copied whole.
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.extend_from_slice(&b[run..i]);
        run = i + 1;
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            c => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
            }
        }
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

/// JSON with an indent of one space, as pydantic's ``model_dump_json(indent=1)`` writes
/// it: each item on a line of its own, ``"key": value``, empty containers as ``{}`` and
/// ``[]``, strings escaped as `json_str` escapes them (serde_json's set).
#[derive(Default)]
struct Pretty {
    out: Vec<u8>,
    /// Per open container: whether it has an item yet.
    open: Vec<bool>,
    /// A float was outside the range where both writers print the same digits.
    odd: bool,
}

impl Pretty {
    fn newline(&mut self) {
        self.out.push(b'\n');
        self.out.resize(self.out.len() + self.open.len(), b' ');
    }

    /// Before a value in the current container.
    fn item(&mut self) {
        if let Some(any) = self.open.last_mut() {
            if *any {
                self.out.push(b',');
            }
            *any = true;
        }
        self.newline();
    }

    fn key(&mut self, key: &str) {
        self.item();
        json_str(&mut self.out, key);
        self.out.extend_from_slice(b": ");
    }

    fn open(&mut self, bracket: u8) {
        self.out.push(bracket);
        self.open.push(false);
    }

    fn close(&mut self, bracket: u8) {
        if self.open.pop() == Some(true) {
            self.newline();
        }
        self.out.push(bracket);
    }

    fn raw(&mut self, text: &[u8]) {
        self.out.extend_from_slice(text);
    }

    fn string(&mut self, text: &str) {
        json_str(&mut self.out, text);
    }

    /// An array of strings.
    fn strings<'a>(&mut self, texts: impl IntoIterator<Item = &'a str>) {
        self.open(b'[');
        for text in texts {
            self.item();
            self.string(text);
        }
        self.close(b']');
    }

    /// ``[time, text, ...]``: an entry of the windows, the distinct reads or the sessions.
    fn timed(&mut self, time: f64, texts: &[&str]) {
        self.open(b'[');
        self.item();
        self.float(time);
        for text in texts {
            self.item();
            self.string(text);
        }
        self.close(b']');
    }

    /// Shortest round-trip digits, as Python's ``repr`` and serde_json's ryu give them in
    /// this range (``1.0``, ``1793491200.01461``).
    fn float(&mut self, value: f64) {
        let plain = value == 0.0 || (1e-4..1e15).contains(&value.abs());
        if !value.is_finite() || !plain {
            self.odd = true;
        }
        self.out.extend_from_slice(format!("{value:?}").as_bytes());
    }
}

type Windows = Vec<(String, Vec<(String, Vec<(f64, String, String)>)>)>;
type Distinct = Vec<(String, Vec<(String, Vec<(String, f64, String)>)>)>;

#[pymethods]
impl Detector {
    #[new]
    #[pyo3(signature = (
        classify, zone_offset, *, ignore_lists, learning, cooldown, bulk_window, denied_window, exec_window,
        enabled, severities, new_ip_service_accounts, off_hours_service_accounts, hours, days,
        off_hours_suffix, bulk_secrets, bulk_namespaces, cluster_wide, bulk_window_text,
        denied_threshold, denied_window_text, exec_window_text, operator
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        classify: Py<PyAny>,
        zone_offset: Py<PyAny>,
        ignore_lists: Vec<(u32, Vec<String>)>,
        learning: i64,
        cooldown: f64,
        bulk_window: f64,
        denied_window: f64,
        exec_window: f64,
        enabled: Vec<bool>,
        severities: Vec<String>,
        new_ip_service_accounts: bool,
        off_hours_service_accounts: bool,
        hours: (i64, i64),
        days: Vec<i64>,
        off_hours_suffix: String,
        bulk_secrets: usize,
        bulk_namespaces: usize,
        cluster_wide: bool,
        bulk_window_text: String,
        denied_threshold: usize,
        denied_window_text: String,
        exec_window_text: String,
        operator: String,
    ) -> PyResult<Self> {
        let enabled: [bool; 9] = enabled
            .try_into()
            .map_err(|_| PyValueError::new_err("nine detectors are enabled or not"))?;
        if severities.len() != 9 {
            return Err(PyValueError::new_err("nine detectors have a severity"));
        }
        Ok(Detector {
            classify,
            zone_offset,
            learning,
            cooldown,
            bulk_window,
            denied_window,
            exec_window,
            enabled,
            severities,
            new_ip_service_accounts,
            off_hours_service_accounts,
            hours,
            days,
            off_hours_suffix,
            bulk_secrets,
            bulk_namespaces,
            cluster_wide,
            bulk_window_text,
            denied_threshold,
            denied_window_text,
            exec_window_text,
            operator,
            ignore: HashMap::default(),
            offsets: HashMap::default(),
            current: 0,
            globs: ignore_lists
                .into_iter()
                .map(|(bit, globs)| {
                    let plain = globs.iter().all(|g| !g.contains('['));
                    plain.then(|| (bit, globs.iter().map(|g| g.chars().collect()).collect()))
                })
                .collect(),
            state: State {
                prune_at: RECENT_IDS,
                sessions_at: RECENT_IDS,
                ..State::default()
            },
        })
    }

    /// Run the detectors over the events of *texts* (from byte *offset*, a JSON array of
    /// stored events, the first numbered *first_seq*) from its item *index* (``0``: the
    /// array starts at *offset*; else *offset* is just after the item before). Returns
    /// ``(lines, count, stop)``: the alerts raised as lines of ``alerts.jsonl``, how many,
    /// and *stop*: ``None`` at the end, or ``(index, start, end)`` of an item to give to
    /// the reference (then call again from *end*). Raises ``ValueError`` (naming a
    /// position only) if *texts* is no such array.
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        texts: &Bound<'py, PyBytes>,
        first_seq: i64,
        offset: usize,
        index: i64,
    ) -> PyResult<Processed<'py>> {
        // The batch runs without the GIL (the writer's threads go on meanwhile); the
        // callbacks take it back. *texts* is immutable and held by the caller.
        let b = texts.as_bytes();
        let (lines, count, stop) = py.allow_threads(|| self.run(b, first_seq, offset, index))?;
        Ok((PyBytes::new(py, &lines), count, stop))
    }

    /// Run the detectors over the events of *commit* (the native core's stored batch, its
    /// first record numbered *first_seq*) from its event *index*, with the views its
    /// reader made as it read them (an event it did not view is read here). Returns
    /// ``(lines, count, stop)`` as :meth:`process` does, *stop* being ``(index, start,
    /// end)`` of the event's text in ``commit.blob`` (then call again from *index* + 1).
    fn process_commit<'py>(
        &mut self,
        py: Python<'py>,
        commit: &Bound<'py, Commit>,
        first_seq: i64,
        index: usize,
    ) -> PyResult<Processed<'py>> {
        // Taken out of the commit, so that no borrow of it is held while the GIL is
        // released (the writer's threads use it meanwhile): the blob is immutable, the
        // views shared.
        let (blob, spans, views) = {
            let c = commit.borrow();
            (
                c.blob.clone_ref(py).into_bound(py),
                c.spans.clone(),
                Arc::clone(&c.views),
            )
        };
        let b = blob.as_bytes();
        let (lines, count, stop) =
            py.allow_threads(|| self.run_commit(b, &spans, &views, first_seq, index))?;
        Ok((PyBytes::new(py, &lines), count, stop))
    }

    /// The start of the learning period the core holds (µs since the epoch), if any.
    #[getter]
    fn started(&self) -> Option<i64> {
        self.state.started
    }

    /// The baseline file's bytes, as ``encode(_exported_doc(self.export(), ...))`` writes
    /// them (pydantic's JSON with an indent of 1), straight from the state: no Python
    /// object per entry. *started* is the ``started`` field's text. ``None`` when a time is
    /// one whose digits the two writers might format differently (not finite, or outside
    /// 1e-4 to 1e15): the caller then takes the export.
    #[pyo3(signature = (started))]
    fn export_json<'py>(
        &self,
        py: Python<'py>,
        started: Option<&str>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let s = &self.state;
        let out = py.allow_threads(|| {
            let sorted = self.sorted_readers()?;
            let mut j = Pretty::default();
            j.open(b'{');
            j.key("version");
            j.raw(b"1");
            j.key("started");
            match started {
                Some(text) => j.string(text),
                None => j.raw(b"null"),
            }
            j.key("last_seq");
            j.raw(s.last_seq.to_string().as_bytes());
            j.key("secret_readers");
            j.open(b'[');
            for (user, namespace, name) in &sorted {
                j.item();
                j.strings([*user, *namespace, *name]);
            }
            j.close(b']');
            j.key("addresses");
            j.open(b'{');
            for (user, known) in &s.addresses.items {
                j.key(user);
                j.strings(known.list.iter().map(String::as_str));
            }
            j.close(b'}');
            j.key("windows");
            j.open(b'{');
            for (detector, per) in &s.windows.items {
                j.key(detector);
                j.open(b'{');
                for (user, entries) in per.items.iter().filter(|(_, q)| !q.is_empty()) {
                    j.key(user);
                    j.open(b'[');
                    for (t, k, i) in entries {
                        j.item();
                        j.timed(*t, &[k, i]);
                    }
                    j.close(b']');
                }
                j.close(b'}');
            }
            j.close(b'}');
            j.key("distinct");
            j.open(b'{');
            for (detector, per) in &s.distinct.items {
                j.key(detector);
                j.open(b'{');
                for (user, seen) in per.items.iter().filter(|(_, r)| r.len() > 0) {
                    j.key(user);
                    j.open(b'{');
                    for (k, t, i) in seen.items() {
                        j.key(k);
                        j.timed(t, &[i]);
                    }
                    j.close(b'}');
                }
                j.close(b'}');
            }
            j.close(b'}');
            j.key("sessions");
            j.open(b'{');
            for (key, v) in &s.sessions.items {
                j.key(key);
                j.timed(v.0, &[&v.1, &v.2, &v.3]);
            }
            j.close(b'}');
            j.key("cooldowns");
            j.open(b'{');
            for (key, v) in &s.cooldowns.items {
                j.key(key);
                j.float(*v);
            }
            j.close(b'}');
            j.key("recent_ids");
            j.strings(s.recent_order.iter().map(|id| &**id));
            j.close(b'}');
            j.out.push(b'\n');
            Ok::<_, PyErr>((!j.odd).then_some(j.out))
        })?;
        Ok(out.map(|bytes| PyBytes::new(py, &bytes)))
    }

    /// The state as plain values (see ``kustos.audit.watching``): started (µs since the
    /// epoch), last_seq, readers (sorted), addresses, windows, distinct, sessions, cooldowns,
    /// recent audit IDs, and the two prune thresholds.
    fn export<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let s = &self.state;
        let readers = PyList::new(py, self.sorted_readers()?)?;
        let addresses = PyDict::new(py);
        for (user, known) in &s.addresses.items {
            addresses.set_item(user, &known.list)?;
        }
        let windows = PyDict::new(py);
        for (detector, per) in &s.windows.items {
            let users = PyDict::new(py);
            for (user, entries) in &per.items {
                let list: Vec<(f64, &str, &str)> = entries
                    .iter()
                    .map(|(t, k, i)| (*t, k.as_str(), i.as_str()))
                    .collect();
                users.set_item(user, list)?;
            }
            windows.set_item(detector, users)?;
        }
        let distinct = PyDict::new(py);
        for (detector, per) in &s.distinct.items {
            let users = PyDict::new(py);
            for (user, seen) in &per.items {
                let list: Vec<(&str, f64, &str)> = seen.items().collect();
                users.set_item(user, list)?;
            }
            distinct.set_item(detector, users)?;
        }
        let sessions = PyDict::new(py);
        for (key, v) in &s.sessions.items {
            sessions.set_item(key, (v.0, &v.1, &v.2, &v.3))?;
        }
        let cooldowns = PyDict::new(py);
        for (key, v) in &s.cooldowns.items {
            cooldowns.set_item(key, *v)?;
        }
        let recent: Vec<&str> = s.recent_order.iter().map(|id| &**id).collect();
        PyTuple::new(
            py,
            [
                s.started.into_pyobject(py)?.into_any(),
                s.last_seq.into_pyobject(py)?.into_any(),
                readers.into_any(),
                addresses.into_any(),
                windows.into_any(),
                distinct.into_any(),
                sessions.into_any(),
                cooldowns.into_any(),
                PyList::new(py, recent)?.into_any(),
                s.prune_at.into_pyobject(py)?.into_any(),
                s.sessions_at.into_pyobject(py)?.into_any(),
            ],
        )
    }

    /// Replace the state with plain values in the shape :meth:`export` gives (each mapping
    /// as a list of ``(key, value)`` pairs, in order).
    #[pyo3(signature = (
        started, last_seq, readers, addresses, windows, distinct, sessions, cooldowns,
        recent, prune_at, sessions_at
    ))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        started: Option<i64>,
        last_seq: i64,
        readers: Vec<(String, String, String)>,
        addresses: Vec<(String, Vec<String>)>,
        windows: Windows,
        distinct: Distinct,
        sessions: Vec<(String, Session)>,
        cooldowns: Vec<(String, f64)>,
        recent: Vec<String>,
        prune_at: usize,
        sessions_at: usize,
    ) {
        let mut s = State {
            started,
            last_seq,
            prune_at,
            sessions_at,
            ..State::default()
        };
        s.readers = readers
            .iter()
            .map(|(u, ns, n)| reader_key(u, ns, n))
            .collect();
        for (user, list) in addresses {
            let set = list.iter().cloned().collect();
            s.addresses.set(&user, Known { list, set });
        }
        for (detector, per) in windows {
            let users = s.windows.entry(&detector, Ordered::default);
            for (user, entries) in per {
                users.set(&user, entries.into_iter().collect());
            }
        }
        for (detector, per) in distinct {
            let users = s.distinct.entry(&detector, Ordered::default);
            for (user, entries) in per {
                let seen = users.entry(&user, Recency::default);
                for (key, time, id) in entries {
                    seen.touch(&key, time, &id);
                }
            }
        }
        for (key, session) in sessions {
            s.sessions.set(&key, session);
        }
        for (key, time) in cooldowns {
            s.cooldowns.set(&key, time);
        }
        for id in recent {
            let id: Arc<str> = Arc::from(id);
            if s.recent.insert(Arc::clone(&id)) {
                s.recent_order.push_back(id);
            }
        }
        self.state = s;
    }
}
