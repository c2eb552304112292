//! The credential detector's per-value decision (`kustos.scan.credentials.detect`), out of
//! the Python interpreter.
//!
//! `detect_credential(key, value, jwt_header)` gives the answer of the Python reference
//! (`_detect_all`, first hit) for an ASCII key and an ASCII value, encoded as a small integer
//! (the rule that fired, the keyword class, the weak flag) or, for an embedded setting, a
//! pair with the setting's name; `None` when no rule fires; `UNSURE` (-1) when the value
//! leads somewhere this code does not replicate (text beyond ASCII, including base64 that
//! decodes to it): the caller then asks the reference. Each pattern of the reference is
//! matched by hand with the same semantics as Python's `re` on ASCII text (boundaries,
//! greedy runs and backtracking, `finditer` restarting at the end of a match), the Python
//! whitespace of `str.strip`/`str.split`/`\s` (`\t \n \x0b \x0c \r \x1c-\x1f` and space),
//! `str.splitlines` (also `\x0b \x0c \x1c \x1d \x1e`, and `\r\n` as one break) and the
//! Shannon entropy summed in the same order as the reference (`Counter` order, first
//! appearance), so the same float. A JWT's header is judged by the reference's own
//! function (`jwt_header`, a JSON parse), called back only for a JWT-shaped match.
//!
//! Nothing here formats the value into an error: the only error is the one the callback
//! raises, which is the reference's own.

use memchr::memmem;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

/// The answer when this code does not replicate the reference for a value.
const UNSURE: i64 = -1;

// Rule codes (the Python side holds the matching kinds and phrases).
const PATTERNS: u8 = 8; // 0..8: the provider patterns, in the reference's order
const PRIVATE_KEY: u8 = 8;
const URL_CREDENTIALS: u8 = 9;
const BASE64: u8 = 16; // 16 + an inner code: base64-wrapped
const HIGH_ENTROPY: u8 = 26;
const PLAINTEXT_PASSWORD: u8 = 27;
const PLAINTEXT_SECRET_KEY: u8 = 28;
const WEAK: i64 = 32;
const CLASS: i64 = 64; // times 1 password, 2 token, 3 secret

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Password = 1,
    Token = 2,
    Secret = 3,
}

enum Answer {
    Nothing,
    Hit {
        code: u8,
        class: Option<Class>,
        weak: bool,
    },
    Embedded {
        class: Class,
        start: usize,
        end: usize,
    },
    Unsure,
}

// ------------------------------------------------------------------------ characters

/// Python's `str.isspace` on ASCII (also what `\s`, `str.strip` and `str.split` use).
#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ')
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[inline]
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn strip(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_ws(s[a]) {
        a += 1;
    }
    while b > a && is_ws(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

/// End of the run of bytes from *i* for which *f* holds.
#[inline]
fn run(s: &[u8], i: usize, f: impl Fn(u8) -> bool) -> usize {
    let mut j = i;
    while j < s.len() && f(s[j]) {
        j += 1;
    }
    j
}

#[inline]
fn at(s: &[u8], i: usize, lit: &[u8]) -> bool {
    s.len() >= i + lit.len() && &s[i..i + lit.len()] == lit
}

#[inline]
fn contains(s: &[u8], lit: &[u8]) -> bool {
    if s.len() < 256 {
        // Short texts (most values): the first byte's places, without building a searcher.
        let mut from = 0;
        while let Some(k) = memchr::memchr(lit[0], &s[from..]) {
            if s[from + k..].starts_with(lit) {
                return true;
            }
            from += k + 1;
        }
        false
    } else {
        memmem::find(s, lit).is_some()
    }
}

/// The lines of `str.splitlines` on ASCII text.
fn lines(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\n' | 0x0b | 0x0c | 0x1c | 0x1d | 0x1e => {
                out.push(&s[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                out.push(&s[start..i]);
                i += if s.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// `-sum(n/total*log2(n/total) for n in Counter(text).values())`: the same terms, added
/// in the same order (first appearance), so the same float.
fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    let mut order: Vec<u8> = Vec::with_capacity(64);
    for &b in s {
        if counts[b as usize] == 0 {
            order.push(b);
        }
        counts[b as usize] += 1;
    }
    let total = s.len() as f64;
    let mut sum = 0.0f64;
    for b in order {
        let p = counts[b as usize] as f64 / total;
        sum += p * p.log2();
    }
    -sum
}

/// Lowercase, ASCII letters and digits only (`_normal` on ASCII text).
fn normal(s: &[u8]) -> Vec<u8> {
    s.iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

// ------------------------------------------------------------------------ key names

const PASSWORD_WORDS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"pwd",
    b"pass",
    b"passphrase",
    b"passwort",
];
const SECRET_WORDS: &[&[u8]] = &[
    b"secret",
    b"token",
    b"credential",
    b"credentials",
    b"creds",
    b"cred",
    b"auth",
    b"bearer",
    b"apikey",
    b"accesskey",
    b"secretkey",
    b"privatekey",
    b"clientsecret",
    b"authkey",
    b"authtoken",
    b"accesstoken",
    b"refreshtoken",
];
const KEY_QUALIFIERS: &[&[u8]] = &[
    b"api",
    b"access",
    b"secret",
    b"private",
    b"auth",
    b"service",
    b"account",
    b"client",
    b"db",
    b"database",
    b"encryption",
    b"signing",
    b"session",
    b"master",
    b"shared",
    b"storage",
    b"license",
    b"hmac",
    b"app",
];
const NEUTRAL_SUFFIXES: &[&[u8]] = &[
    b"value", b"base", b"data", b"string", b"str", b"plain", b"text", b"raw", b"b64", b"base64",
];
const BOOL_NULL: &[&[u8]] = &[
    b"true", b"false", b"yes", b"no", b"on", b"off", b"y", b"n", b"null", b"nil", b"none", b"~",
];
const COMMON_PASSWORDS: &[&[u8]] = &[
    b"password",
    b"passw0rd",
    b"admin",
    b"root",
    b"secret",
    b"letmein",
    b"qwerty",
    b"welcome",
    b"123456",
    b"12345678",
    b"1234",
    b"12345",
    b"default",
    b"guest",
    b"minio123",
    b"minioadmin",
    b"postgres",
    b"mysql",
    b"pass",
    b"toor",
    b"abc123",
    b"admin123",
];

fn one_of(word: &[u8], set: &[&[u8]]) -> bool {
    set.contains(&word)
}

/// The words of `_KEY_WORDS.findall(key)` (`[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+`), lowercased.
fn key_words(key: &[u8]) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < key.len() {
        let b = key[i];
        let end = if b.is_ascii_uppercase() {
            let j = run(key, i, |c| c.is_ascii_uppercase());
            if j == key.len() || !key[j].is_ascii_lowercase() {
                j
            } else if j - i >= 2 {
                j - 1 // the last capital starts the next word
            } else {
                run(key, j, |c| c.is_ascii_lowercase())
            }
        } else if b.is_ascii_lowercase() {
            run(key, i, |c| c.is_ascii_lowercase())
        } else if b.is_ascii_digit() {
            run(key, i, |c| c.is_ascii_digit())
        } else {
            i += 1;
            continue;
        };
        words.push(key[i..end].to_ascii_lowercase());
        i = end;
    }
    words
}

fn key_class(key: &[u8]) -> Option<Class> {
    let mut words = key_words(key);
    while words.len() > 1 && one_of(words.last()?, NEUTRAL_SUFFIXES) {
        words.pop();
    }
    let last = words.last()?;
    if one_of(last, PASSWORD_WORDS) {
        return Some(Class::Password);
    }
    if one_of(last, SECRET_WORDS) {
        return Some(if contains(last, b"token") {
            Class::Token
        } else {
            Class::Secret
        });
    }
    if last.as_slice() == b"key"
        && words.len() > 1
        && one_of(&words[words.len() - 2], KEY_QUALIFIERS)
    {
        return Some(Class::Secret);
    }
    None
}

fn secret_key_name(key: &[u8]) -> bool {
    let words = key_words(key);
    let n = words.len();
    (n >= 2 && words[n - 2] == b"secret" && words[n - 1] == b"key")
        || (n >= 1 && words[n - 1] == b"secretkey")
}

// ------------------------------------------------------------------------ value filters

fn placeholder_token(token: &[u8]) -> bool {
    let leet: Vec<u8> = token
        .iter()
        .filter_map(|&b| {
            let c = b.to_ascii_lowercase();
            match c {
                b'4' | b'@' => Some(b'a'),
                b'3' => Some(b'e'),
                b'0' => Some(b'o'),
                b'1' => Some(b'i'),
                b'5' | b'$' => Some(b's'),
                b'7' => Some(b't'),
                _ if c.is_ascii_lowercase() || c.is_ascii_digit() => Some(c),
                _ => None,
            }
        })
        .collect();
    // Any of the reference's _PLACEHOLDER_MARKERS, in one pass (each looked for where it
    // may start).
    for i in 0..leet.len() {
        let rest = &leet[i..];
        let found = match rest[0] {
            b'c' => rest.starts_with(b"change"),
            b'r' => rest.starts_with(b"replace") || rest.starts_with(b"redacted"),
            b'e' => rest.starts_with(b"example"),
            b'd' => rest.starts_with(b"dummy"),
            b'p' => rest.starts_with(b"placeholder"),
            b's' => rest.starts_with(b"sample"),
            b'y' => rest.starts_with(b"your"),
            b'i' => rest.starts_with(b"insert"),
            b't' => rest.starts_with(b"todo") || rest.starts_with(b"test"),
            b'f' => rest.starts_with(b"fixme") || rest.starts_with(b"fake"),
            b'n' => rest.starts_with(b"notreal"),
            b'x' => rest.starts_with(b"xxx"),
            _ => false,
        };
        if found {
            return true;
        }
    }
    let stripped: Vec<u8> = token
        .iter()
        .copied()
        .filter(|&b| !(is_ws(b) || b == b'-' || b == b'_' || b == b'.'))
        .collect();
    if stripped.iter().all(|&b| Some(&b) == stripped.first()) {
        return true; // one character (or none)
    }
    let mut same = 1;
    for w in stripped.windows(2) {
        if w[0] == w[1] {
            same += 1;
            if same >= 8 {
                return true;
            }
        } else {
            same = 1;
        }
    }
    false
}

fn placeholder(value: &[u8]) -> bool {
    let text = strip(value);
    if text.len() >= 2 && text[0] == b'<' && text[text.len() - 1] == b'>' {
        return true;
    }
    placeholder_token(text)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn template(text: &[u8]) -> bool {
    // `$(`, `${`, `{{`, `{%`, `<%`, `#{` or `%{` anywhere.
    if text.windows(2).any(|w| {
        matches!(
            (w[0], w[1]),
            (b'$', b'(') | (b'$' | b'{' | b'#' | b'%', b'{') | (b'{' | b'<', b'%')
        )
    }) {
        return true;
    }
    let n = text.len();
    if n >= 2 && text[0] == b'$' && is_ident_start(text[1]) && run(text, 2, is_word) == n {
        return true;
    }
    n >= 3
        && text[0] == b'%'
        && text[n - 1] == b'%'
        && is_ident_start(text[1])
        && run(text, 2, is_word) == n - 1
}

fn path(text: &[u8]) -> bool {
    text.first() == Some(&b'/')
        || at(text, 0, b"./")
        || at(text, 0, b"../")
        || at(text, 0, b"~/")
        || at(text, 0, b"file:")
        || (text.len() >= 3
            && text[0].is_ascii_alphabetic()
            && text[1] == b':'
            && (text[2] == b'\\' || text[2] == b'/'))
}

fn is_scheme(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
}

fn url(text: &[u8]) -> bool {
    !text.is_empty() && text[0].is_ascii_alphabetic() && at(text, run(text, 1, is_scheme), b"://")
}

fn bool_null(text: &[u8]) -> bool {
    one_of(&text.to_ascii_lowercase(), BOOL_NULL)
}

/// `^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|[KMGTP]i?|[kmgt]b?|%)?$`.
fn number(text: &[u8]) -> bool {
    let mut i = 0;
    if matches!(text.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let d = run(text, i, |b| b.is_ascii_digit());
    if d > i {
        i = d;
        if text.get(i) == Some(&b'.') {
            i = run(text, i + 1, |b| b.is_ascii_digit());
        }
    } else if text.get(i) == Some(&b'.') {
        let d = run(text, i + 1, |b| b.is_ascii_digit());
        if d == i + 1 {
            return false;
        }
        i = d;
    } else {
        return false;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(text.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let d = run(text, j, |b| b.is_ascii_digit());
        if d == j {
            return false;
        }
        i = d;
    }
    let rest = &text[i..];
    match rest.len() {
        0 => true,
        1 => matches!(
            rest[0],
            b's' | b'm'
                | b'h'
                | b'd'
                | b'K'
                | b'M'
                | b'G'
                | b'T'
                | b'P'
                | b'k'
                | b'g'
                | b't'
                | b'%'
        ),
        2 => {
            rest == b"ms"
                || (matches!(rest[0], b'K' | b'M' | b'G' | b'T' | b'P') && rest[1] == b'i')
                || (matches!(rest[0], b'k' | b'm' | b'g' | b't') && rest[1] == b'b')
        }
        _ => false,
    }
}

/// `^[a-z0-9][a-z0-9.-]*/[a-z0-9][a-z0-9.-]*$`.
fn namespaced_name(text: &[u8]) -> bool {
    fn part(p: &[u8]) -> bool {
        let first = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !p.is_empty() && first(p[0]) && p[1..].iter().all(|&b| first(b) || b == b'.' || b == b'-')
    }
    match memchr::memchr(b'/', text) {
        Some(k) => part(&text[..k]) && part(&text[k + 1..]),
        None => false,
    }
}

fn has_space(text: &[u8]) -> bool {
    text.iter().any(|&b| is_ws(b))
}

fn filtered(value: &[u8]) -> bool {
    let text = strip(value);
    text.is_empty()
        || has_space(text)
        || template(text)
        || path(text)
        || url(text)
        || bool_null(text)
        || number(text)
        || namespaced_name(text)
}

fn same_as_key(key: &[u8], value: &[u8]) -> bool {
    let norm = normal(value);
    norm == normal(key) || one_of(&norm, PASSWORD_WORDS) || one_of(&norm, SECRET_WORDS)
}

/// `\d+(?:\.\d+)?[a-zA-Z%]{1,2}` as a full match.
fn quantity(text: &[u8]) -> bool {
    let d = run(text, 0, |b| b.is_ascii_digit());
    if d == 0 {
        return false;
    }
    let mut i = d;
    if text.get(i) == Some(&b'.') {
        let f = run(text, i + 1, |b| b.is_ascii_digit());
        if f > i + 1 {
            i = f;
        }
    }
    let rest = &text[i..];
    (1..=2).contains(&rest.len()) && rest.iter().all(|&b| b.is_ascii_alphabetic() || b == b'%')
}

fn literal_password(key: &[u8], value: &[u8]) -> bool {
    let text = strip(value);
    if text.is_empty() || has_space(text) || bool_null(text) {
        return false;
    }
    if template(text) || path(text) || url(text) {
        return false;
    }
    if namespaced_name(text) || normal(text) == normal(key) {
        return false;
    }
    text.len() >= 3 && !quantity(text)
}

fn is_weak(value: &[u8]) -> bool {
    let text = strip(value);
    one_of(&normal(text), COMMON_PASSWORDS)
        || text.len() < 8
        || text.iter().all(|b| b.is_ascii_digit())
        || entropy(text) < 3.0
}

fn word_secret(value: &[u8]) -> bool {
    value.len() >= 6
        && value.iter().any(|b| b.is_ascii_alphabetic())
        && value.iter().any(|b| b.is_ascii_digit())
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._@!#%^&*+-".contains(&b))
}

fn high_entropy(value: &[u8]) -> bool {
    if !value.iter().any(|b| b.is_ascii_alphabetic()) || !value.iter().any(|b| b.is_ascii_digit()) {
        return false;
    }
    if value.iter().all(|&b| b.is_ascii_hexdigit() || b == b'-') {
        let bare: Vec<u8> = value.iter().copied().filter(|&b| b != b'-').collect();
        return bare.len() >= 12 && entropy(&bare) > 3.0;
    }
    if value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-'))
    {
        if value.len() < 12 {
            return false;
        }
        let limit = 0.85 * (value.len() as f64).log2();
        return entropy(value) > if 4.5 <= limit { 4.5 } else { limit };
    }
    value.len() >= 10 && entropy(value) > 3.5
}

// ------------------------------------------------------------------------ provider patterns

#[inline]
fn boundary(s: &[u8], i: usize) -> bool {
    i == 0 || !is_word(s[i - 1])
}

#[inline]
fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

fn aws(s: &[u8], i: usize) -> Option<usize> {
    if !boundary(s, i) || s.len() < i + 20 {
        return None;
    }
    let p = &s[i..i + 4];
    let prefix = matches!(p, b"AKIA" | b"ASIA" | b"ABIA" | b"ACCA")
        || (&p[..3] == b"A3T" && upper_digit(p[3]));
    if !prefix || !s[i + 4..i + 20].iter().all(|&b| upper_digit(b)) {
        return None;
    }
    (s.len() == i + 20 || !is_word(s[i + 20])).then_some(i + 20)
}

fn github(s: &[u8], i: usize) -> Option<usize> {
    if !boundary(s, i) {
        return None;
    }
    let (start, len, class): (usize, usize, fn(u8) -> bool) = if at(s, i, b"gh")
        && matches!(s.get(i + 2), Some(b'p' | b'o' | b'u' | b's' | b'r'))
        && s.get(i + 3) == Some(&b'_')
    {
        (i + 4, 36, |b: u8| b.is_ascii_alphanumeric())
    } else if at(s, i, b"github_pat_") {
        (i + 11, 82, is_word)
    } else {
        return None;
    };
    let end = start + len;
    if s.len() < end || !s[start..end].iter().all(|&b| class(b)) {
        return None;
    }
    (s.len() == end || !is_word(s[end])).then_some(end)
}

fn gitlab(s: &[u8], i: usize) -> Option<usize> {
    if !boundary(s, i) || !at(s, i, b"glpat-") {
        return None;
    }
    let end = run(s, i + 6, is_token);
    (end - (i + 6) >= 20).then_some(end)
}

fn slack_token(s: &[u8], i: usize) -> Option<usize> {
    if !boundary(s, i)
        || !at(s, i, b"xox")
        || !matches!(s.get(i + 3), Some(b'a' | b'b' | b'o' | b'p' | b'r' | b's'))
        || s.get(i + 4) != Some(&b'-')
    {
        return None;
    }
    let p = i + 5;
    let q = run(s, p, |b| b.is_ascii_digit());
    if q == p || s.get(q) != Some(&b'-') {
        return None;
    }
    let t = q + 1;
    let end = run(s, t, |b| b.is_ascii_alphanumeric() || b == b'-');
    (end - t >= 6 && s.get(end) != Some(&b'_')).then_some(end)
}

fn slack_webhook(s: &[u8], i: usize) -> Option<usize> {
    const PREFIX: &[u8] = b"https://hooks.slack.com/services/T";
    if !at(s, i, PREFIX) {
        return None;
    }
    let a = i + PREFIX.len();
    let b = run(s, a, upper_digit);
    if b == a || s.get(b) != Some(&b'/') || s.get(b + 1) != Some(&b'B') {
        return None;
    }
    let c = run(s, b + 2, upper_digit);
    if c == b + 2 || s.get(c) != Some(&b'/') {
        return None;
    }
    let end = run(s, c + 1, |b| b.is_ascii_alphanumeric());
    (end - (c + 1) >= 20).then_some(end)
}

fn google(s: &[u8], i: usize) -> Option<usize> {
    if !boundary(s, i) || !at(s, i, b"AIza") {
        return None;
    }
    let end = run(s, i + 4, is_token);
    (end - (i + 4) == 35).then_some(end)
}

fn stripe(s: &[u8], i: usize) -> Option<usize> {
    if !boundary(s, i) || !(at(s, i, b"sk_live_") || at(s, i, b"rk_live_")) {
        return None;
    }
    let end = run(s, i + 8, |b| b.is_ascii_alphanumeric());
    (end - (i + 8) >= 24 && s.get(end) != Some(&b'_')).then_some(end)
}

fn jwt(s: &[u8], i: usize) -> Option<usize> {
    if !boundary(s, i) || !at(s, i, b"eyJ") {
        return None;
    }
    let a = run(s, i + 3, is_token);
    if a - (i + 3) < 8 || !at(s, a, b".eyJ") {
        return None;
    }
    let b = run(s, a + 4, is_token);
    if b - (a + 4) < 8 || s.get(b) != Some(&b'.') {
        return None;
    }
    let c = run(s, b + 1, is_token);
    (c - (b + 1) >= 8).then_some(c)
}

type Matcher = fn(&[u8], usize) -> Option<usize>;

/// The provider patterns in the reference's order, each with the literal every match holds
/// and the bytes a match may start with.
const MATCHERS: [(Matcher, &[u8], &[u8]); PATTERNS as usize] = [
    (aws, b"A", b"A"),
    (github, b"g", b"g"),
    (gitlab, b"glpat-", b"g"),
    (slack_token, b"xox", b"x"),
    (slack_webhook, b"hooks.slack.com/services/", b"h"),
    (google, b"AIza", b"A"),
    (stripe, b"_live_", b"sr"),
    (jwt, b"eyJ", b"e"),
];

/// The next position from *from* where a match may start (one of *first*).
#[inline]
fn next_start(s: &[u8], from: usize, first: &[u8]) -> Option<usize> {
    let rest = &s[from..];
    match first {
        [a] => memchr::memchr(*a, rest),
        [a, b] => memchr::memchr2(*a, *b, rest),
        _ => Some(0),
    }
    .map(|k| from + k)
}

/// The body of a key block counts: 64+ base64 characters on lines without `:`, and no
/// placeholder.
fn key_body(body: &[u8]) -> bool {
    let joined: Vec<u8> = lines(body)
        .into_iter()
        .filter(|l| !l.contains(&b':'))
        .flatten()
        .copied()
        .collect();
    joined
        .iter()
        .filter(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .count()
        >= 64
        && !placeholder_token(&joined)
}

/// The first private-key block (`_PRIVATE_KEY.finditer`) whose body counts.
fn private_key(s: &[u8]) -> bool {
    const TYPES: [&[u8]; 7] = [
        b"RSA ",
        b"DSA ",
        b"EC ",
        b"OPENSSH ",
        b"PGP ",
        b"ENCRYPTED ",
        b"SSH2 ",
    ];
    let finder = memmem::Finder::new(b"-----BEGIN ");
    let mut from = 0;
    while let Some(k) = finder.find(&s[from..]).map(|k| from + k) {
        let mut p = k + 11;
        if let Some(t) = TYPES.iter().find(|t| at(s, p, t)) {
            if at(s, p + t.len(), b"PRIVATE KEY") {
                p += t.len();
            }
        }
        if !at(s, p, b"PRIVATE KEY") {
            from = k + 1;
            continue;
        }
        p += 11;
        if at(s, p, b" BLOCK-----") {
            p += 11;
        } else if at(s, p, b"-----") {
            p += 5;
        } else {
            from = k + 1;
            continue;
        }
        let (body_end, end) = match memmem::find(&s[p..], b"-----END") {
            Some(e) => (p + e, p + e + 8),
            None => (s.len(), s.len()),
        };
        if key_body(&s[p..body_end]) {
            return true;
        }
        if end >= s.len() {
            return false;
        }
        from = end;
    }
    false
}

/// A PuTTY key file (`_PUTTY_KEY.finditer`) whose body counts.
fn putty_key(s: &[u8]) -> bool {
    let finder = memmem::Finder::new(b"PuTTY-User-Key-File-");
    let lines_finder = memmem::Finder::new(b"Private-Lines:");
    let mut from = 0;
    while let Some(k) = finder.find(&s[from..]).map(|k| from + k) {
        if !matches!(s.get(k + 20), Some(b'2' | b'3')) || s.get(k + 21) != Some(&b':') {
            from = k + 1;
            continue;
        }
        let mut j = k + 22;
        let mut body = None;
        while let Some(m) = lines_finder.find(&s[j..]).map(|m| j + m) {
            let a = run(s, m + 14, is_ws);
            let d = run(s, a, |b| b.is_ascii_digit());
            if d > a {
                body = Some(run(s, d, is_ws));
                break;
            }
            j = m + 1;
        }
        match body {
            Some(b) => return key_body(&s[b..]), // the body runs to the end: one match at most
            None => from = k + 1,
        }
    }
    false
}

/// A URL with a user and a literal password (`_URL_CREDENTIALS.finditer`, filtered).
fn url_credentials(s: &[u8]) -> bool {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if (i > 0 && is_scheme(s[i - 1])) || !s[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let a = run(s, i + 1, is_scheme);
        if !at(s, a, b"://") {
            i += 1;
            continue;
        }
        let u = run(s, a + 3, |b| {
            !(b == b'/' || is_ws(b) || b == b':' || b == b'@')
        });
        if s.get(u) != Some(&b':') {
            i += 1;
            continue;
        }
        let w = run(s, u + 1, |b| !(b == b'/' || is_ws(b) || b == b'@'));
        if w == u + 1
            || s.get(w) != Some(&b'@')
            || !matches!(s.get(w + 1), Some(&b) if b.is_ascii_alphanumeric() || b == b'[')
        {
            i += 1;
            continue;
        }
        let password = &s[u + 1..w];
        if !(filtered(password) || placeholder(password) || same_as_key(b"", password)) {
            return true;
        }
        i = w + 2;
    }
    false
}

/// The first provider rule *s* triggers (`_provider_matches(s, decode=False)`).
fn provider(py: Python<'_>, s: &[u8], jwt_header: &Bound<'_, PyAny>) -> PyResult<Option<u8>> {
    for (code, (matcher, marker, first)) in MATCHERS.iter().enumerate() {
        if !contains(s, marker) {
            continue;
        }
        // `finditer`: a search at each position in turn (only where a match may start), and
        // after a match at its end.
        let mut from = 0;
        while let Some(i) = next_start(s, from, first) {
            let Some(end) = matcher(s, i) else {
                from = i + 1;
                continue;
            };
            let token = &s[i..end];
            let skip =
                placeholder_token(token) || (code == 7 && !jwt_header_of(py, token, jwt_header)?);
            if !skip {
                return Ok(Some(code as u8));
            }
            from = end;
        }
    }
    if contains(s, b"PRIVATE KEY") && private_key(s) {
        return Ok(Some(PRIVATE_KEY));
    }
    if contains(s, b"PuTTY-User-Key-File-") && putty_key(s) {
        return Ok(Some(PRIVATE_KEY));
    }
    if contains(s, b"://") && url_credentials(s) {
        return Ok(Some(URL_CREDENTIALS));
    }
    Ok(None)
}

fn jwt_header_of(py: Python<'_>, token: &[u8], jwt_header: &Bound<'_, PyAny>) -> PyResult<bool> {
    // ASCII: a valid str.
    let text = std::str::from_utf8(token).unwrap_or_default();
    jwt_header.call1((PyString::new(py, text),))?.is_truthy()
}

// ------------------------------------------------------------------------ base64-wrapped

#[inline]
fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-')
}

fn b64_value(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' | b'-' => 62,
        _ => 63, // '/' and '_'
    }
}

enum Decoded {
    No,
    Text(Vec<u8>),
    Unsure,
}

/// `_b64decode`: *data* base64 characters followed by *pads* `=` (0-2).
fn b64decode(data: &[u8], pads: usize) -> Decoded {
    let n = data.len();
    let urlsafe = data.iter().any(|&b| b == b'-' || b == b'_');
    let total_pads = pads + (4 - (n + pads) % 4) % 4;
    // Python's a2b_base64: one data character past a multiple of four is an error; in strict
    // mode (the validated standard alphabet) so is data after a completed padding.
    if n % 4 == 1 || (!urlsafe && n % 4 == 3 && total_pads > 1) {
        return Decoded::No;
    }
    let mut raw = Vec::with_capacity(n / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in data {
        acc = (acc << 6) | b64_value(b) as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            raw.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if std::str::from_utf8(&raw).is_err() {
        return Decoded::No;
    }
    let mut beyond = false;
    for &b in &raw {
        if b >= 0x80 {
            beyond = true;
        } else if !(0x20..0x7f).contains(&b) && !matches!(b, b'\n' | b'\r' | b'\t') {
            return Decoded::No; // not printable, whatever else it holds
        }
    }
    if raw.is_empty() {
        Decoded::No
    } else if beyond {
        Decoded::Unsure // printable beyond ASCII is a Unicode question: the reference answers
    } else {
        Decoded::Text(raw)
    }
}

/// The base64 candidates of *text* (`_BASE64_TEXT`): (start, data end, end with `=`).
fn b64_runs(text: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !is_b64(text[i]) {
            i += 1;
            continue;
        }
        let d = run(text, i, is_b64);
        if d - i >= 16 {
            let mut e = d;
            while e < text.len() && e < d + 2 && text[e] == b'=' {
                e += 1;
            }
            out.push((i, d, e));
            i = e;
        } else {
            i = d;
        }
    }
    out
}

enum Wrapped {
    No,
    Hit(u8),
    Unsure,
}

fn decoded(py: Python<'_>, text: &[u8], jwt_header: &Bound<'_, PyAny>) -> PyResult<Wrapped> {
    if text.len() < 16 {
        return Ok(Wrapped::No);
    }
    let compact: Vec<u8> = text.iter().copied().filter(|&b| !is_ws(b)).collect();
    let mut candidates: Vec<(&[u8], usize)> = Vec::new();
    let whole = b64_runs(&compact);
    if whole.len() == 1 && whole[0].0 == 0 && whole[0].2 == compact.len() {
        candidates.push((&compact[..whole[0].1], whole[0].2 - whole[0].1));
    }
    for (a, d, e) in b64_runs(text) {
        if text[a..e] != compact[..] {
            candidates.push((&text[a..d], e - d));
        }
    }
    for (data, pads) in candidates {
        match b64decode(data, pads) {
            Decoded::No => {}
            Decoded::Unsure => return Ok(Wrapped::Unsure),
            Decoded::Text(inner) => {
                if let Some(code) = provider(py, &inner, jwt_header)? {
                    return Ok(Wrapped::Hit(code));
                }
            }
        }
    }
    Ok(Wrapped::No)
}

// ------------------------------------------------------------------------ keyword-named keys

fn keyword_hit(key: &[u8], value: &[u8], embedded: bool) -> Option<(u8, Class, bool)> {
    let class = key_class(key)?;
    if placeholder(value) {
        return None;
    }
    let is_filtered = filtered(value) || same_as_key(key, value);
    if !is_filtered && high_entropy(value) {
        return Some((HIGH_ENTROPY, class, false));
    }
    if !embedded && class == Class::Password && literal_password(key, value) {
        return Some((PLAINTEXT_PASSWORD, class, is_weak(value)));
    }
    if is_filtered {
        return None;
    }
    if !embedded && secret_key_name(key) && word_secret(value) {
        return Some((PLAINTEXT_SECRET_KEY, class, is_weak(value)));
    }
    None
}

/// `_ASSIGNMENT.match(line)`: the (start, end) of the setting's name and its value.
fn assignment(line: &[u8]) -> Option<((usize, usize), usize)> {
    let p = run(line, 0, is_ws);
    let after = |q: usize| -> Option<((usize, usize), usize)> {
        let mut i = q;
        if matches!(line.get(i), Some(b'"' | b'\'')) {
            i += 1;
        }
        if !matches!(line.get(i), Some(&b) if is_ident_start(b)) {
            return None;
        }
        let ks = i;
        i = run(line, i + 1, |b| is_word(b) || b == b'.' || b == b'-');
        let ke = i;
        if matches!(line.get(i), Some(b'"' | b'\'')) {
            i += 1;
        }
        i = run(line, i, is_ws);
        if !matches!(line.get(i), Some(b':' | b'=')) {
            return None;
        }
        Some(((ks, ke), run(line, i + 1, is_ws)))
    };
    for prefix in [&b"export"[..], b"-"] {
        if at(line, p, prefix) {
            let q = p + prefix.len();
            let r = run(line, q, is_ws);
            if r > q {
                if let Some(found) = after(r) {
                    return Some(found);
                }
            }
        }
    }
    after(p)
}

fn unquote(value: &[u8]) -> &[u8] {
    let mut text = strip(value);
    while let Some((&last, rest)) = text.split_last() {
        if last == b',' || last == b';' {
            text = rest;
        } else {
            break;
        }
    }
    let text = strip(text);
    let n = text.len();
    if n >= 2 && text[0] == text[n - 1] && (text[0] == b'"' || text[0] == b'\'') {
        &text[1..n - 1]
    } else {
        text
    }
}

fn answer(
    py: Python<'_>,
    key: Option<&[u8]>,
    value: &[u8],
    jwt_header: &Bound<'_, PyAny>,
) -> PyResult<Answer> {
    let text = strip(value);
    if text.is_empty() {
        return Ok(Answer::Nothing);
    }
    if let Some(code) = provider(py, text, jwt_header)? {
        return Ok(Answer::Hit {
            code,
            class: None,
            weak: false,
        });
    }
    match decoded(py, text, jwt_header)? {
        Wrapped::No => {}
        Wrapped::Hit(code) => {
            return Ok(Answer::Hit {
                code: BASE64 + code,
                class: None,
                weak: false,
            })
        }
        Wrapped::Unsure => return Ok(Answer::Unsure),
    }
    if let Some(key) = key {
        if !text.contains(&b'\n') {
            if let Some((code, class, weak)) = keyword_hit(key, text, false) {
                return Ok(Answer::Hit {
                    code,
                    class: Some(class),
                    weak,
                });
            }
        }
    }
    let named = key.is_some_and(|k| key_class(k).is_some());
    if !named && text.iter().any(|&b| b == b'=' || b == b':') {
        for line in lines(text) {
            let Some(((ks, ke), vs)) = assignment(line) else {
                continue;
            };
            let name = &line[ks..ke];
            if key_class(name).is_none() {
                continue;
            }
            if let Some((_, class, _)) = keyword_hit(name, unquote(&line[vs..]), true) {
                // Where the name is in *value* (a line is a piece of it).
                let start = line.as_ptr() as usize - value.as_ptr() as usize + ks;
                return Ok(Answer::Embedded {
                    class,
                    start,
                    end: start + (ke - ks),
                });
            }
        }
    }
    Ok(Answer::Nothing)
}

/// The reference's first credential hit for *key* and *value* (see the module's text):
/// `None`, an integer (rule code, plus 32 if weak, plus 64 times the key's class), a pair
/// (that integer, the embedded setting's name), or -1 when the reference must answer.
#[pyfunction]
#[pyo3(signature = (key, value, jwt_header))]
pub fn detect_credential(
    py: Python<'_>,
    key: Option<&str>,
    value: &str,
    jwt_header: &Bound<'_, PyAny>,
) -> PyResult<PyObject> {
    if !value.is_ascii() || key.is_some_and(|k| !k.is_ascii()) {
        return Ok(UNSURE.into_pyobject(py)?.into_any().unbind());
    }
    let v = value.as_bytes();
    let code = |code: u8, class: Option<Class>, weak: bool| -> i64 {
        code as i64 + if weak { WEAK } else { 0 } + class.map_or(0, |c| c as i64 * CLASS)
    };
    Ok(match answer(py, key.map(str::as_bytes), v, jwt_header)? {
        Answer::Nothing => py.None(),
        Answer::Unsure => UNSURE.into_pyobject(py)?.into_any().unbind(),
        Answer::Hit {
            code: c,
            class,
            weak,
        } => code(c, class, weak).into_pyobject(py)?.into_any().unbind(),
        Answer::Embedded { class, start, end } => {
            let name = PyString::new(py, &value[start..end]);
            let number = code(HIGH_ENTROPY, Some(class), false).into_pyobject(py)?;
            PyTuple::new(py, [number.into_any(), name.into_any()])?
                .into_any()
                .unbind()
        }
    })
}

/// `key_class` of the reference: 0 none, 1 password, 2 token, 3 secret (for the tests).
#[pyfunction]
pub fn credential_key_class(key: &str) -> u8 {
    key_class(key.as_bytes()).map_or(0, |c| c as u8)
}
