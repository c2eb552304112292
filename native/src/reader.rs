//! The one strict JSON reader of the native core, and what it reads of an audit event.
//!
//! The archive's writer (`read_lines`, `read_event_list`) reads each event once with it:
//! the fields the archive needs and those the detectors use (`View`), so that the
//! detector thread gets each stored event's view from the writer (`Packed`, spans into
//! the stored text) instead of reading the text again. The detectors read a text
//! themselves (`event_view`, the same function) only when the writer did not (an event
//! the Python reference wrote, or a batch given as a JSON array).
//!
//! It accepts only what the Python reference reads the same way: strict JSON, each field
//! once, the expected types, no lone surrogate, nesting up to `MAX_DEPTH`. Anything else
//! is `Unsure`, and the reference decides.

use std::borrow::Cow;

/// The fast reader gives up: the Python reference path decides.
#[derive(Debug)]
pub(crate) struct Unsure;
pub(crate) type R<T> = Result<T, Unsure>;

pub(crate) const MAX_DEPTH: u32 = 64;
/// Bytes Python's `bytes.strip()` removes.
pub(crate) fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
    pub(crate) depth: u32,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b, i: 0, depth: 0 }
    }

    #[inline]
    pub(crate) fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    pub(crate) fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(Unsure)
    }

    #[inline]
    pub(crate) fn expect(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let s = self.b.get(self.i..self.i + 4).ok_or(Unsure)?;
        let mut v = 0u32;
        for &c in s {
            let d = (c as char).to_digit(16).ok_or(Unsure)?;
            v = v * 16 + d;
        }
        self.i += 4;
        if (0xD800..=0xDFFF).contains(&v) {
            return Err(Unsure); // surrogates: the reference may refuse them
        }
        Ok(v)
    }

    /// The plain run of a string from the cursor: up to the next quote or backslash
    /// (whose position is returned); `Unsure` on a control character or the end.
    #[inline]
    fn plain(&mut self) -> R<(usize, bool)> {
        let rest = &self.b[self.i..];
        let n = memchr::memchr2(b'"', b'\\', rest).ok_or(Unsure)?;
        let (low, high) = rest[..n]
            .iter()
            .fold((u8::MAX, 0u8), |(low, high), &c| (low.min(c), high | c));
        if low < 0x20 {
            return Err(Unsure);
        }
        self.i += n;
        Ok((n, high >= 0x80))
    }

    /// A string, decoded (borrowed when it has no escapes); must be valid UTF-8.
    pub(crate) fn string(&mut self) -> R<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.i;
        let (_, wide) = self.plain()?;
        if self.b[self.i] == b'"' {
            let run = &self.b[start..self.i];
            self.i += 1;
            let s = if wide {
                std::str::from_utf8(run).map_err(|_| Unsure)?
            } else {
                // SAFETY: every byte is ASCII (checked by `plain`).
                unsafe { std::str::from_utf8_unchecked(run) }
            };
            return Ok(Cow::Borrowed(s));
        }
        let mut out: Vec<u8> = self.b[start..self.i].to_vec();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let v = self.hex4()?;
                            let ch = char::from_u32(v).ok_or(Unsure)?;
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err(Unsure),
                    }
                }
                c if c < 0x20 => return Err(Unsure),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map(Cow::Owned).map_err(|_| Unsure)
    }

    /// Skip a string (its bytes are kept as they came, so they are not decoded).
    fn skip_string(&mut self) -> R<()> {
        self.expect(b'"')?;
        loop {
            self.plain()?;
            let c = self.b[self.i];
            self.i += 1;
            if c == b'"' {
                return Ok(());
            }
            let e = self.peek()?;
            self.i += 1;
            match e {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    self.hex4()?;
                }
                _ => return Err(Unsure),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    /// A number in strict JSON grammar; whether it is an integer.
    pub(crate) fn number(&mut self) -> R<bool> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        let first = self.peek()?;
        let n = self.digits();
        if n == 0 || (first == b'0' && n > 1) {
            return Err(Unsure);
        }
        let mut integer = true;
        if self.i < self.b.len() && self.b[self.i] == b'.' {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Unsure);
            }
            integer = false;
        }
        if self.i < self.b.len() && matches!(self.b[self.i], b'e' | b'E') {
            self.i += 1;
            if self.i < self.b.len() && matches!(self.b[self.i], b'+' | b'-') {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Unsure);
            }
            integer = false;
        }
        Ok(integer)
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    pub(crate) fn skip_value(&mut self) -> R<()> {
        match self.peek()? {
            b'{' => self.object(|r, _| r.skip_value()),
            b'[' => self.array(|r| r.skip_value()),
            b'"' => self.skip_string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => Err(Unsure),
        }
    }

    /// `null` (then `false`), or not (then `true`, nothing read).
    pub(crate) fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(false)
        } else {
            Ok(true)
        }
    }

    /// A JSON object: each member's key and then its value given to *field*, in order.
    pub(crate) fn object<F: FnMut(&mut Self, &str) -> R<()>>(&mut self, mut field: F) -> R<()> {
        self.members(b'{', b'}', |r| {
            let key = r.string()?;
            r.ws();
            r.expect(b':')?;
            r.ws();
            field(r, &key)
        })
    }

    /// A JSON array: each item given to *item*, in order.
    pub(crate) fn array<F: FnMut(&mut Self) -> R<()>>(&mut self, item: F) -> R<()> {
        self.members(b'[', b']', item)
    }

    /// The frame both containers share: *open*, members read by *member* and separated by
    /// commas, *close*; nesting deeper than `MAX_DEPTH` is unsure.
    fn members<F: FnMut(&mut Self) -> R<()>>(
        &mut self,
        open: u8,
        close: u8,
        mut member: F,
    ) -> R<()> {
        self.expect(open)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unsure);
        }
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            member(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// An array of strings, each given to *each* in order.
    pub(crate) fn strings(&mut self, mut each: impl FnMut(Cow<'a, str>)) -> R<()> {
        self.array(|r| {
            each(r.string()?);
            Ok(())
        })
    }

    /// `null` (`false`, nothing else read) or an object read field by field by *field*.
    fn nullable(&mut self, field: impl FnMut(&mut Self, &str) -> R<()>) -> R<bool> {
        if !self.null()? {
            return Ok(false);
        }
        self.object(field)?;
        Ok(true)
    }
}

/// Each field once: a repeated one is left to the reference (which keeps the last).
pub(crate) fn once(seen: &mut u32, bit: u32) -> R<()> {
    if *seen & bit != 0 {
        return Err(Unsure);
    }
    *seen |= bit;
    Ok(())
}

// ------------------------------------------------------------------------------ events

/// Kinds whose bodies hold values (`kustos.audit.records.SENSITIVE_KINDS`).
const SENSITIVE_KINDS: [&str; 6] = [
    "Secret",
    "SecretList",
    "ConfigMap",
    "ConfigMapList",
    "TokenReview",
    "TokenRequest",
];

/// The group of unauthenticated requests (`kustos.audit.detecting`).
const ANON_GROUP: &str = "system:unauthenticated";

/// A `user` or `impersonatedUser` object.
#[derive(Default)]
pub(crate) struct User<'a> {
    pub(crate) username: Option<Cow<'a, str>>,
    /// One of the groups is `system:unauthenticated` (all the detectors ask of them).
    pub(crate) anonymous: bool,
    /// `extra`'s pod-name list was present and not empty: its first item.
    pub(crate) pod: Option<Cow<'a, str>>,
}

/// A request or response body: absent, `null`, or an object.
#[derive(Default, PartialEq, Clone, Copy)]
pub(crate) enum Body {
    #[default]
    Unset,
    Null,
    Object,
}

/// What the archive and the detectors use of one event, read as msgspec's strict decode
/// of `EventView` would read it.
#[derive(Default)]
pub(crate) struct View<'a> {
    pub(crate) audit_id: Cow<'a, str>,
    pub(crate) stage: Cow<'a, str>,
    pub(crate) verb: Cow<'a, str>,
    pub(crate) uri: Cow<'a, str>,
    pub(crate) timestamp: Cow<'a, str>,
    pub(crate) received: Cow<'a, str>,
    pub(crate) stage_time: Cow<'a, str>,
    pub(crate) user: Option<User<'a>>,
    pub(crate) acting: Option<User<'a>>,
    pub(crate) last_ip: Option<Cow<'a, str>>,
    pub(crate) has_ref: bool,
    pub(crate) resource: Cow<'a, str>,
    pub(crate) subresource: Cow<'a, str>,
    pub(crate) namespace: Cow<'a, str>,
    pub(crate) name: Cow<'a, str>,
    pub(crate) api_group: Cow<'a, str>,
    pub(crate) has_status: bool,
    pub(crate) code: Option<i64>,
    pub(crate) request_body: Body,
    pub(crate) response_body: Body,
    /// A body's `kind` is one that holds values.
    pub(crate) sensitive_kind: bool,
    pub(crate) created: Option<Cow<'a, str>>,
    pub(crate) stripped: bool,
    /// Read, but not for the detectors: a status code past 64 bits (the archive stores
    /// it as it came; the reference detector decides).
    pub(crate) odd: bool,
}

impl View<'_> {
    /// A request or response body is present (even `null`).
    pub(crate) fn has_body(&self) -> bool {
        self.request_body != Body::Unset || self.response_body != Body::Unset
    }

    /// Whether the reference would strip this event's bodies (`needs_stripping`).
    pub(crate) fn sensitive(&self) -> bool {
        let pair = (&*self.api_group, &*self.resource);
        self.sensitive_kind
            || self.has_ref
                && (matches!(
                    pair,
                    ("", "secrets")
                        | ("", "configmaps")
                        | ("authentication.k8s.io", "tokenreviews")
                ) || self.subresource == "token")
    }
}

fn user<'a>(r: &mut Reader<'a>) -> R<Option<User<'a>>> {
    let mut u = User::default();
    let mut seen = 0;
    let present = r.nullable(|r, key| match key {
        "username" => {
            once(&mut seen, 1)?;
            u.username = if r.null()? { Some(r.string()?) } else { None };
            Ok(())
        }
        "groups" => {
            once(&mut seen, 2)?;
            r.strings(|g| u.anonymous |= g == ANON_GROUP)
        }
        "extra" => {
            once(&mut seen, 4)?;
            let mut seen_extra = 0;
            r.nullable(|r, key| {
                if key != "authentication.kubernetes.io/pod-name" {
                    return r.skip_value();
                }
                once(&mut seen_extra, 1)?;
                let mut first = None;
                r.strings(|p| {
                    if first.is_none() {
                        first = Some(p);
                    }
                })?;
                u.pod = first;
                Ok(())
            })?;
            Ok(())
        }
        _ => r.skip_value(),
    })?;
    Ok(present.then_some(u))
}

fn body<'a>(r: &mut Reader<'a>, sensitive_kind: &mut bool) -> R<Body> {
    let mut seen = 0;
    let present = r.nullable(|r, key| {
        if key != "kind" {
            return r.skip_value();
        }
        once(&mut seen, 1)?;
        let kind = r.string()?;
        *sensitive_kind |= SENSITIVE_KINDS.contains(&&*kind);
        Ok(())
    })?;
    Ok(if present { Body::Object } else { Body::Null })
}

/// The view of the event (one JSON object) at the reader's cursor, which ends past it.
pub(crate) fn event_view<'a>(r: &mut Reader<'a>) -> R<View<'a>> {
    let mut v = View::default();
    let mut seen = 0u32;
    let mut kind_ok = true;
    r.object(|r, key| match key {
        "kind" => {
            once(&mut seen, 1 << 2)?;
            kind_ok = r.string()? == "Event";
            Ok(())
        }
        "auditID"
        | "stage"
        | "verb"
        | "requestURI"
        | "timestamp"
        | "requestReceivedTimestamp"
        | "stageTimestamp" => {
            let (bit, slot) = match key {
                "auditID" => (0, &mut v.audit_id),
                "stage" => (1, &mut v.stage),
                "verb" => (3, &mut v.verb),
                "requestURI" => (4, &mut v.uri),
                "timestamp" => (5, &mut v.timestamp),
                "requestReceivedTimestamp" => (6, &mut v.received),
                _ => (7, &mut v.stage_time),
            };
            once(&mut seen, 1 << bit)?;
            *slot = r.string()?;
            Ok(())
        }
        "user" => {
            once(&mut seen, 1 << 8)?;
            v.user = user(r)?;
            Ok(())
        }
        "impersonatedUser" => {
            once(&mut seen, 1 << 9)?;
            v.acting = user(r)?;
            Ok(())
        }
        "sourceIPs" => {
            once(&mut seen, 1 << 10)?;
            let mut last = None;
            r.strings(|ip| last = Some(ip))?;
            v.last_ip = last;
            Ok(())
        }
        "objectRef" => {
            once(&mut seen, 1 << 11)?;
            let mut seen_ref = 0;
            v.has_ref = r.nullable(|r, key| {
                let (bit, slot) = match key {
                    "resource" => (1, &mut v.resource),
                    "namespace" => (2, &mut v.namespace),
                    "name" => (4, &mut v.name),
                    "subresource" => (8, &mut v.subresource),
                    "apiGroup" => (16, &mut v.api_group),
                    _ => return r.skip_value(),
                };
                once(&mut seen_ref, bit)?;
                *slot = r.string()?;
                Ok(())
            })?;
            Ok(())
        }
        "responseStatus" => {
            once(&mut seen, 1 << 12)?;
            let mut seen_status = 0;
            let mut code = None;
            let mut odd = false;
            v.has_status = r.nullable(|r, key| {
                if key != "code" {
                    return r.skip_value();
                }
                once(&mut seen_status, 1)?;
                if r.null()? {
                    let start = r.i;
                    if !r.number()? {
                        return Err(Unsure); // a float where an int belongs
                    }
                    // SAFETY: the number's bytes are ASCII.
                    let text = unsafe { std::str::from_utf8_unchecked(&r.b[start..r.i]) };
                    code = text.parse::<i64>().ok();
                    odd = code.is_none();
                }
                Ok(())
            })?;
            v.code = code;
            v.odd |= odd;
            Ok(())
        }
        // A body: stored as it came only if it needs no stripping (see `item_of`).
        "requestObject" => {
            once(&mut seen, 1 << 15)?;
            v.request_body = body(r, &mut v.sensitive_kind)?;
            Ok(())
        }
        "responseObject" => {
            once(&mut seen, 1 << 16)?;
            v.response_body = body(r, &mut v.sensitive_kind)?;
            Ok(())
        }
        "metadata" => {
            once(&mut seen, 1 << 13)?;
            let mut seen_meta = 0;
            let mut created = Cow::Borrowed("");
            if r.nullable(|r, key| {
                if key != "creationTimestamp" {
                    return r.skip_value();
                }
                once(&mut seen_meta, 1)?;
                created = r.string()?;
                Ok(())
            })? {
                v.created = Some(created);
            }
            Ok(())
        }
        "annotations" => {
            once(&mut seen, 1 << 14)?;
            let mut seen_ann = 0;
            let mut stripped = false;
            r.nullable(|r, key| {
                if key != "kustos.io/values-stripped" {
                    return r.skip_value();
                }
                once(&mut seen_ann, 1)?;
                stripped = if r.null()? {
                    r.string()?;
                    true
                } else {
                    false
                };
                Ok(())
            })?;
            v.stripped = stripped;
            Ok(())
        }
        _ => r.skip_value(),
    })?;
    if seen & 3 != 3 || !kind_ok {
        return Err(Unsure); // auditID and stage are required
    }
    Ok(v)
}

/// The view of one event's whole text (surrounding whitespace allowed).
pub(crate) fn read_event(text: &[u8]) -> R<View<'_>> {
    let mut r = Reader::new(text);
    r.ws();
    let v = event_view(&mut r)?;
    r.ws();
    if r.i != text.len() {
        return Err(Unsure);
    }
    Ok(v)
}

// ------------------------------------------------------------------------------ packed

/// A string of an event's text: where it is, from the text's first byte.
#[derive(Clone, Copy, Default)]
struct Span(u32, u32);

/// Strings of a `Packed` view, in this order.
const AUDIT_ID: usize = 0;
const STAGE: usize = 1;
const VERB: usize = 2;
const URI: usize = 3;
const TIMESTAMP: usize = 4;
const RECEIVED: usize = 5;
const STAGE_TIME: usize = 6;
const RESOURCE: usize = 7;
const SUBRESOURCE: usize = 8;
const NAMESPACE: usize = 9;
const NAME: usize = 10;
const API_GROUP: usize = 11;
const LAST_IP: usize = 12;
const CREATED: usize = 13;
/// The user's name and pod, then the impersonated user's.
const USERS: usize = 14;
const STRINGS: usize = 18;

/// Flags of a `Packed` view.
const HAS_REF: u32 = 1;
const HAS_STATUS: u32 = 1 << 1;
const HAS_CODE: u32 = 1 << 2;
const SENSITIVE_KIND: u32 = 1 << 3;
const STRIPPED: u32 = 1 << 4;
const HAS_IP: u32 = 1 << 5;
const HAS_CREATED: u32 = 1 << 6;
/// Per user (shifted by 4 for the impersonated one): present, named, anonymous, pod.
const USER: u32 = 1 << 8;
const NAMED: u32 = 1 << 9;
const ANONYMOUS: u32 = 1 << 10;
const POD: u32 = 1 << 11;

/// A `View` without its text: every string a span of the event's text, so it costs no
/// allocation and stays valid wherever those bytes are copied (the segment blob). Made by
/// the writer's reader; a view with a decoded (escaped) string is not packed, and the
/// detectors read that event's text themselves.
#[derive(Clone, Copy)]
pub(crate) struct Packed {
    spans: [Span; STRINGS],
    flags: u32,
    code: i64,
    bodies: [Body; 2],
}

impl Packed {
    /// *v* packed, when every string it holds is borrowed from *text* (not decoded) and
    /// the detectors can read it (`odd` not set).
    pub(crate) fn of(v: &View<'_>, text: &[u8]) -> Option<Packed> {
        if v.odd {
            return None;
        }
        let base = text.as_ptr() as usize;
        let span = |s: &Cow<'_, str>| -> Option<Span> {
            match s {
                // Absent fields are `Cow::default()`: an empty `Owned`.
                s if s.is_empty() => Some(Span(0, 0)),
                Cow::Borrowed(s) => {
                    let at = (s.as_ptr() as usize).checked_sub(base)?;
                    let end = at + s.len();
                    (end <= text.len()).then_some(Span(at as u32, end as u32))
                }
                Cow::Owned(_) => None,
            }
        };
        let mut spans = [Span::default(); STRINGS];
        let mut flags = 0;
        for (slot, s) in [
            (AUDIT_ID, &v.audit_id),
            (STAGE, &v.stage),
            (VERB, &v.verb),
            (URI, &v.uri),
            (TIMESTAMP, &v.timestamp),
            (RECEIVED, &v.received),
            (STAGE_TIME, &v.stage_time),
            (RESOURCE, &v.resource),
            (SUBRESOURCE, &v.subresource),
            (NAMESPACE, &v.namespace),
            (NAME, &v.name),
            (API_GROUP, &v.api_group),
        ] {
            spans[slot] = span(s)?;
        }
        for (slot, bit, s) in [
            (LAST_IP, HAS_IP, &v.last_ip),
            (CREATED, HAS_CREATED, &v.created),
        ] {
            if let Some(s) = s {
                spans[slot] = span(s)?;
                flags |= bit;
            }
        }
        for (n, u) in [&v.user, &v.acting].into_iter().enumerate() {
            let Some(u) = u else { continue };
            let shift = 4 * n as u32;
            flags |= USER << shift;
            if u.anonymous {
                flags |= ANONYMOUS << shift;
            }
            if let Some(name) = &u.username {
                spans[USERS + 2 * n] = span(name)?;
                flags |= NAMED << shift;
            }
            if let Some(pod) = &u.pod {
                spans[USERS + 2 * n + 1] = span(pod)?;
                flags |= POD << shift;
            }
        }
        for (bit, on) in [
            (HAS_REF, v.has_ref),
            (HAS_STATUS, v.has_status),
            (HAS_CODE, v.code.is_some()),
            (SENSITIVE_KIND, v.sensitive_kind),
            (STRIPPED, v.stripped),
        ] {
            if on {
                flags |= bit;
            }
        }
        Some(Packed {
            spans,
            flags,
            code: v.code.unwrap_or(0),
            bodies: [v.request_body, v.response_body],
        })
    }

    /// The view again, over *text*: the very bytes it was packed from (or a copy of them).
    pub(crate) fn view<'a>(&self, text: &'a [u8]) -> R<View<'a>> {
        let s = |slot: usize| -> R<Cow<'a, str>> {
            let Span(a, b) = self.spans[slot];
            let bytes = text.get(a as usize..b as usize).ok_or(Unsure)?;
            // SAFETY: the bytes were read as a string of this very text (the writer's
            // reader checked them as UTF-8) and are copied unchanged into the blob.
            Ok(Cow::Borrowed(unsafe {
                std::str::from_utf8_unchecked(bytes)
            }))
        };
        let on = |bit: u32| self.flags & bit != 0;
        let mut users = [None, None];
        for (n, slot) in users.iter_mut().enumerate() {
            let shift = 4 * n as u32;
            if on(USER << shift) {
                *slot = Some(User {
                    username: if on(NAMED << shift) {
                        Some(s(USERS + 2 * n)?)
                    } else {
                        None
                    },
                    anonymous: on(ANONYMOUS << shift),
                    pod: if on(POD << shift) {
                        Some(s(USERS + 2 * n + 1)?)
                    } else {
                        None
                    },
                });
            }
        }
        let [user, acting] = users;
        Ok(View {
            audit_id: s(AUDIT_ID)?,
            stage: s(STAGE)?,
            verb: s(VERB)?,
            uri: s(URI)?,
            timestamp: s(TIMESTAMP)?,
            received: s(RECEIVED)?,
            stage_time: s(STAGE_TIME)?,
            user,
            acting,
            last_ip: if on(HAS_IP) { Some(s(LAST_IP)?) } else { None },
            has_ref: on(HAS_REF),
            resource: s(RESOURCE)?,
            subresource: s(SUBRESOURCE)?,
            namespace: s(NAMESPACE)?,
            name: s(NAME)?,
            api_group: s(API_GROUP)?,
            has_status: on(HAS_STATUS),
            code: on(HAS_CODE).then_some(self.code),
            request_body: self.bodies[0],
            response_body: self.bodies[1],
            sensitive_kind: on(SENSITIVE_KIND),
            created: if on(HAS_CREATED) {
                Some(s(CREATED)?)
            } else {
                None
            },
            stripped: on(STRIPPED),
            odd: false,
        })
    }
}
