//! OSC address-pattern matching on raw bytes: OSC 1.0 `?`, `*`, `[...]`, `{...}` plus the
//! OSC 1.1 path-traversing `//`.
//!
//! What it does: [`matches()`] decides whether a pattern matches a literal address, [`validate`]
//! checks a pattern once (slow path, e.g. when a route table is compiled) and [`is_pattern`]
//! tells a literal address from a pattern. Everything works on `&[u8]` and never allocates,
//! never panics, and a malformed pattern never matches anything.
//!
//! What it does not do: parse OSC packets, dispatch messages, or match a pattern against
//! another pattern.
//!
//! # Syntax
//! A pattern is `/` followed by segments separated by `/`. Inside one segment:
//! - `?` matches any single byte (a segment never contains `/`);
//! - `*` matches zero or more bytes;
//! - `[abc]`, `[a-z]`, `[!x]`, `[!a-z]`: a byte class. A leading `!` negates it; a `-` first or
//!   last in the class is literal; a reversed range such as `[z-a]` matches nothing; `[]` is an
//!   empty class (matches nothing) and `[!]` matches any byte. The class ends at the first `]`.
//! - `{foo,bar,}`: alternatives, each a literal string (possibly empty); `*`, `?`, `[` and `{`
//!   are literal inside braces. The alternatives end at the first `}`.
//! - any other byte, including a stray `]`, `}` or `,`, is literal.
//!
//! An empty segment followed by another `/` (that is, `//`) matches zero or more whole path
//! levels: `//foo` matches `/foo` and `/a/b/foo`, `/a//c` matches `/a/c` and `/a/x/y/c`. A
//! trailing empty segment (`/a/`) is a literal empty segment.
//!
//! `[` and `{` must close inside their own segment; otherwise the pattern is malformed.
//!
//! # Complexity
//! Matching works level by level. `//` is handled like a glob `*` over whole segments, with
//! greedy matching and a single backtrack point (the last `//` seen); every backtrack moves
//! that point one address segment further, so the path level costs
//! O(pattern segments x address segments) segment comparisons.
//!
//! Inside a segment without braces the same greedy-`*` scheme with one backtrack point runs
//! in O(pattern length x segment length). A segment with braces is matched by simulating its
//! automaton with a 256-bit state set on the stack (one state per pattern byte), again
//! O(pattern length x segment length); for that reason a segment that contains `{` may be at
//! most [`MAX_BRACE_SEGMENT`] bytes long. No input takes exponential time: a hostile pattern
//! such as `*a*a*a*a*a*b` costs a small multiple of the product of the two lengths.

use core::fmt;

/// Longest pattern segment (bytes between two `/`) that may contain `{`.
///
/// The brace matcher keeps one bit per pattern byte in a fixed 256-bit set on the stack; the
/// extra bit is the accepting state after the last byte.
pub const MAX_BRACE_SEGMENT: usize = 255;

/// Why a pattern is malformed. `offset` is the byte offset into the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// The pattern is empty.
    Empty,
    /// The pattern does not start with `/`.
    NoLeadingSlash,
    /// A `[` at `offset` has no `]` before the end of its segment.
    UnclosedBracket {
        /// Offset of the `[`.
        offset: usize,
    },
    /// A `{` at `offset` has no `}` before the end of its segment.
    UnclosedBrace {
        /// Offset of the `{`.
        offset: usize,
    },
    /// The segment starting at `offset` contains `{` and is longer than [`MAX_BRACE_SEGMENT`].
    SegmentTooLong {
        /// Offset of the segment's first byte.
        offset: usize,
        /// Length of the segment.
        len: usize,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => f.write_str("empty OSC address pattern; it must start with '/'"),
            Self::NoLeadingSlash => f.write_str("OSC address pattern must start with '/'"),
            Self::UnclosedBracket { offset } => write!(
                f,
                "'[' at byte {offset} is not closed by ']' within its path segment"
            ),
            Self::UnclosedBrace { offset } => write!(
                f,
                "'{{' at byte {offset} is not closed by '}}' within its path segment"
            ),
            Self::SegmentTooLong { offset, len } => write!(
                f,
                "path segment at byte {offset} uses '{{...}}' and is {len} bytes long; \
                 the limit is {MAX_BRACE_SEGMENT}"
            ),
        }
    }
}

impl core::error::Error for PatternError {}

/// True when `address` contains any pattern syntax: one of `?*[]{}`, or `//`.
pub fn is_pattern(address: &[u8]) -> bool {
    address
        .iter()
        .any(|b| matches!(b, b'?' | b'*' | b'[' | b']' | b'{' | b'}'))
        || address.windows(2).any(|w| w == b"//")
}

/// Checks that `pattern` is well formed (see the module docs for the syntax).
pub fn validate(pattern: &[u8]) -> Result<(), PatternError> {
    match pattern.first() {
        None => return Err(PatternError::Empty),
        Some(b'/') => {}
        Some(_) => return Err(PatternError::NoLeadingSlash),
    }
    let mut start = Some(1);
    while let Some(s) = start {
        let (seg, next) = segment(pattern, s);
        validate_segment(seg, s)?;
        start = next;
    }
    Ok(())
}

/// True when `pattern` matches the literal `address`.
///
/// A malformed pattern (see [`validate`]) matches nothing; an address that does not start with
/// `/` is matched by nothing.
pub fn matches(pattern: &[u8], address: &[u8]) -> bool {
    validate(pattern).is_ok() && matches_validated(pattern, address)
}

/// [`matches()`] for a pattern that already passed [`validate`] (the route table checks its
/// patterns once at compile time). Given a malformed pattern it still cannot panic, but the
/// answer is unspecified.
pub(crate) fn matches_validated(pattern: &[u8], address: &[u8]) -> bool {
    let mut steps = 0;
    match_path(pattern, address, &mut steps)
}

/// Splits off the segment that starts at `start` (just after a `/`): returns the segment and
/// the start of the next one, or `None` when this is the last segment.
#[inline]
fn segment(path: &[u8], start: usize) -> (&[u8], Option<usize>) {
    let rest = path.get(start..).unwrap_or(&[]);
    match rest.iter().position(|&b| b == b'/') {
        Some(i) => (rest.get(..i).unwrap_or(&[]), Some(start + i + 1)),
        None => (rest, None),
    }
}

/// Offset of the first `]` after the `[` at `open`.
#[inline]
fn class_end(seg: &[u8], open: usize) -> Option<usize> {
    let body = seg.get(open + 1..)?;
    body.iter().position(|&b| b == b']').map(|i| open + 1 + i)
}

/// Offset of the first `}` after the `{` at `open`.
#[inline]
fn brace_end(seg: &[u8], open: usize) -> Option<usize> {
    let body = seg.get(open + 1..)?;
    body.iter().position(|&b| b == b'}').map(|i| open + 1 + i)
}

fn validate_segment(seg: &[u8], base: usize) -> Result<(), PatternError> {
    let mut has_brace = false;
    let mut i = 0;
    while let Some(&b) = seg.get(i) {
        i = match b {
            b'[' => match class_end(seg, i) {
                Some(end) => end + 1,
                None => return Err(PatternError::UnclosedBracket { offset: base + i }),
            },
            b'{' => {
                has_brace = true;
                match brace_end(seg, i) {
                    Some(end) => end + 1,
                    None => return Err(PatternError::UnclosedBrace { offset: base + i }),
                }
            }
            _ => i + 1,
        };
    }
    if has_brace && seg.len() > MAX_BRACE_SEGMENT {
        return Err(PatternError::SegmentTooLong {
            offset: base,
            len: seg.len(),
        });
    }
    Ok(())
}

/// Does the class body (the bytes between `[` and `]`) accept `c`?
fn class_matches(body: &[u8], c: u8) -> bool {
    let (negate, body) = match body.split_first() {
        Some((b'!', rest)) => (true, rest),
        _ => (false, body),
    };
    let mut hit = false;
    let mut i = 0;
    while let Some(&lo) = body.get(i) {
        // A '-' between two bytes makes a range; a '-' first or last is literal.
        match (body.get(i + 1), body.get(i + 2)) {
            (Some(b'-'), Some(&hi)) => {
                hit |= lo <= c && c <= hi;
                i += 3;
            }
            _ => {
                hit |= lo == c;
                i += 1;
            }
        }
    }
    hit != negate
}

/// Path level: greedy matching with `//` as a wildcard over whole segments and one backtrack
/// point. `steps` counts loop iterations and compared bytes (for the complexity tests).
fn match_path(pattern: &[u8], address: &[u8], steps: &mut u64) -> bool {
    if pattern.first() != Some(&b'/') || address.first() != Some(&b'/') {
        return false;
    }
    let mut p = Some(1usize);
    let mut a = Some(1usize);
    // (pattern position after the last `//`, address position it resumes from)
    let mut star: Option<(Option<usize>, Option<usize>)> = None;
    loop {
        *steps += 1;
        match p {
            Some(pp) => {
                let (pseg, pnext) = segment(pattern, pp);
                if pseg.is_empty() && pnext.is_some() {
                    p = pnext;
                    star = Some((pnext, a));
                    continue;
                }
                if let Some(ap) = a {
                    let (aseg, anext) = segment(address, ap);
                    if match_segment(pseg, aseg, steps) {
                        p = pnext;
                        a = anext;
                        continue;
                    }
                }
            }
            None if a.is_none() => return true,
            None => {}
        }
        // Mismatch: let the last `//` swallow one more address segment, or give up.
        match star {
            Some((sp, Some(sa))) => {
                let (_, anext) = segment(address, sa);
                star = Some((sp, anext));
                p = sp;
                a = anext;
            }
            _ => return false,
        }
    }
}

/// One pattern segment against one address segment.
#[inline]
fn match_segment(pat: &[u8], text: &[u8], steps: &mut u64) -> bool {
    if pat.contains(&b'{') {
        match_braces(pat, text, steps)
    } else {
        match_greedy(pat, text, steps)
    }
}

/// Brace-free segment: greedy `*` with a single backtrack point (the last `*`).
fn match_greedy(pat: &[u8], text: &[u8], steps: &mut u64) -> bool {
    let mut p = 0usize;
    let mut t = 0usize;
    // (pattern index just after the last `*`, text index that `*` currently extends to)
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        *steps += 1;
        let advanced = match pat.get(p).copied() {
            Some(b'*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class_end(pat, p).and_then(|end| {
                let body = pat.get(p + 1..end).unwrap_or(&[]);
                class_matches(body, c).then_some(end + 1)
            }),
            Some(b) if b == c => Some(p + 1),
            _ => None,
        };
        match (advanced, star) {
            (Some(np), _) => {
                p = np;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pat.get(p..).unwrap_or(&[]).iter().all(|&b| b == b'*')
}

/// A 256-bit set of automaton states (pattern byte offsets 0..=255).
#[derive(Clone, Copy, Default)]
struct StateSet([u64; 4]);

impl StateSet {
    #[inline]
    fn insert(&mut self, s: usize) {
        if let Some(w) = self.0.get_mut(s / 64) {
            *w |= 1 << (s % 64);
        }
    }

    #[inline]
    fn contains(&self, s: usize) -> bool {
        self.0.get(s / 64).is_some_and(|w| w & (1 << (s % 64)) != 0)
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Calls `f` on every member in increasing order, including members that `f` adds above
    /// the one it is looking at.
    #[inline]
    fn for_each_growing(&mut self, mut f: impl FnMut(usize, &mut Self)) {
        for w in 0..self.0.len() {
            let mut done = 0u64;
            loop {
                let pending = self.0[w] & !done;
                if pending == 0 {
                    break;
                }
                let bit = pending.trailing_zeros() as usize;
                done |= 1 << bit;
                f(w * 64 + bit, self);
            }
        }
    }
}

/// Segment with braces: simulate its automaton. State `s` means "about to match the token
/// that starts at pattern byte `s`"; state `pat.len()` accepts. Inside braces the bytes of an
/// alternative are states of their own; `,` and `}` there mean "alternative done".
fn match_braces(pat: &[u8], text: &[u8], steps: &mut u64) -> bool {
    let n = pat.len();
    if n > MAX_BRACE_SEGMENT {
        return false;
    }
    // Which offsets lie inside braces (the alternatives and their `,`/`}`).
    let mut inside = StateSet::default();
    let mut i = 0;
    while let Some(&b) = pat.get(i) {
        i = match b {
            b'[' => class_end(pat, i).map_or(n, |e| e + 1),
            b'{' => {
                let Some(end) = brace_end(pat, i) else {
                    return false;
                };
                for j in i + 1..=end {
                    inside.insert(j);
                }
                end + 1
            }
            _ => i + 1,
        };
    }
    // Epsilon moves only go forward, so one ascending pass closes a set.
    let close = |set: &mut StateSet| {
        set.for_each_growing(|s, set| {
            let Some(&b) = pat.get(s) else { return };
            if inside.contains(s) {
                if b == b',' || b == b'}' {
                    if let Some(end) = brace_end(pat, s.saturating_sub(1)) {
                        set.insert(end + 1);
                    }
                }
            } else if b == b'*' {
                set.insert(s + 1);
            } else if b == b'{' {
                set.insert(s + 1);
                let end = brace_end(pat, s).unwrap_or(s);
                for j in s + 1..end {
                    if pat.get(j) == Some(&b',') {
                        set.insert(j + 1);
                    }
                }
            }
        });
    };
    let mut cur = StateSet::default();
    cur.insert(0);
    close(&mut cur);
    for &c in text {
        let mut next = StateSet::default();
        cur.for_each_growing(|s, _| {
            *steps += 1;
            let Some(&b) = pat.get(s) else { return };
            if inside.contains(s) {
                if b != b',' && b != b'}' && b == c {
                    next.insert(s + 1);
                }
                return;
            }
            match b {
                b'*' => next.insert(s),
                b'?' => next.insert(s + 1),
                b'[' => {
                    if let Some(end) = class_end(pat, s) {
                        if class_matches(pat.get(s + 1..end).unwrap_or(&[]), c) {
                            next.insert(end + 1);
                        }
                    }
                }
                b'{' => {}
                _ if b == c => next.insert(s + 1),
                _ => {}
            }
        });
        if next.is_empty() {
            return false;
        }
        close(&mut next);
        cur = next;
    }
    cur.contains(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CASES: &[(&str, &str, bool)] = &[
        // literals
        ("/a/b", "/a/b", true),
        ("/a/b", "/a/c", false),
        ("/a/b", "/a/b/c", false),
        ("/a/b/c", "/a/b", false),
        ("/", "/", true),
        ("/", "/a", false),
        ("/a/", "/a/", true),
        ("/a/", "/a", false),
        ("/a", "a", false),
        ("/a", "", false),
        // ?
        ("/a?c", "/abc", true),
        ("/a?c", "/ac", false),
        ("/a?c", "/abbc", false),
        ("/a?", "/a/", false),
        ("/??", "/ab", true),
        // *
        ("/*", "/anything", true),
        ("/*", "/", true),
        ("/*", "/a/b", false),
        ("/a*", "/a", true),
        ("/a*c", "/abbbc", true),
        ("/a*c", "/abbbcd", false),
        ("/*b*", "/aaabccc", true),
        ("/*/*", "/x/y", true),
        ("/*/*", "/x", false),
        ("/a/*/c", "/a/b/c", true),
        ("/a/*/c", "/a/b/d/c", false),
        ("/**", "/x", true),
        ("/*a*a*b", "/aaaab", true),
        ("/*a*a*b", "/aaaa", false),
        ("/*?", "/", false),
        ("/*?", "/x", true),
        // classes
        ("/[abc]", "/b", true),
        ("/[abc]", "/d", false),
        ("/[a-z]x", "/qx", true),
        ("/[a-z]x", "/Qx", false),
        ("/[!x]", "/y", true),
        ("/[!x]", "/x", false),
        ("/[!a-z]", "/5", true),
        ("/[!a-z]", "/m", false),
        ("/[-a]", "/-", true),
        ("/[a-]", "/-", true),
        ("/[a-]", "/b", false),
        ("/[!-]", "/-", false),
        ("/[!-]", "/a", true),
        ("/[a-c-e]", "/-", true),
        ("/[a-c-e]", "/d", false),
        ("/[z-a]", "/m", false),
        ("/[]", "/a", false),
        ("/[!]", "/a", true),
        ("/[*]", "/*", true),
        ("/[*]", "/a", false),
        ("/[{]", "/{", true),
        ("/x[0-9][0-9]", "/x42", true),
        ("/x[0-9][0-9]", "/x4", false),
        // braces
        ("/{foo,bar}", "/foo", true),
        ("/{foo,bar}", "/bar", true),
        ("/{foo,bar}", "/baz", false),
        ("/{foo,bar}", "/foobar", false),
        ("/x{,y}", "/x", true),
        ("/x{,y}", "/xy", true),
        ("/{}", "/", true),
        ("/{}", "/a", false),
        ("/{a,ab}c", "/abc", true),
        ("/{a,ab}c", "/ac", true),
        ("/{a,ab}c", "/abbc", false),
        ("/{*,?}", "/*", true),
        ("/{*,?}", "/a", false),
        ("/{a[b,c}", "/a[b", true),
        ("/*{x,y}", "/aaay", true),
        ("/{a,b}*{c,d}", "/a123d", true),
        ("/{a,b}*{c,d}", "/a123e", false),
        ("/{a,b}[0-9]?", "/b7z", true),
        ("/{a,b}/{c,d}", "/b/c", true),
        ("/{a,b}/{c,d}", "/b/e", false),
        // stray closers and commas are literal
        ("/a]", "/a]", true),
        ("/a}", "/a}", true),
        ("/a,b", "/a,b", true),
        // //
        ("//foo", "/foo", true),
        ("//foo", "/a/b/foo", true),
        ("//foo", "/a/b/foox", false),
        ("//foo", "/foo/a", false),
        ("/a//c", "/a/c", true),
        ("/a//c", "/a/x/y/c", true),
        ("/a//c", "/b/x/c", false),
        ("//a//b", "/x/a/y/z/b", true),
        ("//a//b", "/x/b/y/a", false),
        ("///a", "/x/a", true),
        ("//*", "/x/y/z", true),
        ("//", "/", true),
        ("//", "/a/", true),
        ("//", "/a", false),
        ("/a//", "/a", false),
        ("/a//", "/a/b/", true),
        ("//b/c", "/b/b/c", true),
        ("//{x,y}/[0-9]", "/q/r/y/4", true),
        ("//a/b", "/a/a/b", true),
        ("//a/b", "/a/b/a/c", false),
        // malformed never matches
        ("/[abc", "/a", false),
        ("/{a,b", "/a", false),
        ("/a[b/c]", "/a[b/c]", false),
        ("/{a/b}", "/{a/b}", false),
        ("", "", false),
        ("a", "a", false),
    ];

    #[test]
    fn table() {
        for &(p, a, want) in CASES {
            assert_eq!(matches(p.as_bytes(), a.as_bytes()), want, "{p:?} vs {a:?}");
            assert_eq!(
                reference(p.as_bytes(), a.as_bytes()),
                want,
                "ref {p:?} vs {a:?}"
            );
        }
    }

    #[test]
    fn validate_errors() {
        assert_eq!(validate(b""), Err(PatternError::Empty));
        assert_eq!(validate(b"a/b"), Err(PatternError::NoLeadingSlash));
        assert_eq!(
            validate(b"/ab/c[d"),
            Err(PatternError::UnclosedBracket { offset: 5 })
        );
        assert_eq!(
            validate(b"/a[b/c]"),
            Err(PatternError::UnclosedBracket { offset: 2 })
        );
        assert_eq!(
            validate(b"/x/{a,b"),
            Err(PatternError::UnclosedBrace { offset: 3 })
        );
        let long = format!("/ok/{{a,b}}{}", "x".repeat(300));
        assert_eq!(
            validate(long.as_bytes()),
            Err(PatternError::SegmentTooLong {
                offset: 4,
                len: 305
            })
        );
        assert!(!matches(long.as_bytes(), long.as_bytes()));
        // A long segment without braces is fine, and so is one at the limit.
        let long_star = format!("/{}*", "x".repeat(1000));
        assert_eq!(validate(long_star.as_bytes()), Ok(()));
        assert!(matches(long_star.as_bytes(), long_star.as_bytes()));
        let at_limit = format!("/{{a,b}}{}", "x".repeat(MAX_BRACE_SEGMENT - 5));
        assert_eq!(validate(at_limit.as_bytes()), Ok(()));
        let addr = format!("/b{}", "x".repeat(MAX_BRACE_SEGMENT - 5));
        assert!(matches(at_limit.as_bytes(), addr.as_bytes()));
        for ok in ["/", "//", "/a]/b}", "/[]", "/{}", "/[!]x{,}", "//a//b"] {
            assert_eq!(validate(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn error_display_names_offset() {
        let e = PatternError::UnclosedBracket { offset: 7 };
        assert!(e.to_string().contains("byte 7"));
        assert!(PatternError::NoLeadingSlash.to_string().contains('/'));
    }

    #[test]
    fn is_pattern_cases() {
        for p in ["/a?", "/*", "/[a]", "/a]", "/{a}", "/}", "//a", "/a//"] {
            assert!(is_pattern(p.as_bytes()), "{p}");
        }
        for a in ["/a/b", "/", "/a-b!,c", ""] {
            assert!(!is_pattern(a.as_bytes()), "{a}");
        }
    }

    fn steps_for(p: &[u8], a: &[u8]) -> (bool, u64) {
        let mut steps = 0;
        let m = match_path(p, a, &mut steps);
        (m, steps)
    }

    #[test]
    fn hostile_patterns_are_polynomial() {
        let text = format!("/{}", "a".repeat(2000));
        let p = b"/*a*a*a*a*a*a*a*a*a*a*b";
        let (m, steps) = steps_for(p, text.as_bytes());
        assert!(!m);
        assert!(steps <= (p.len() as u64 + 1) * 2001 * 2, "steps {steps}");

        let mut braces = String::from("/");
        for _ in 0..20 {
            braces.push_str("{a,aa}");
        }
        braces.push('b');
        let text = format!("/{}", "a".repeat(60));
        let (m, steps) = steps_for(braces.as_bytes(), text.as_bytes());
        assert!(!m);
        assert!(steps <= (braces.len() as u64 + 1) * 61 * 2, "steps {steps}");

        let mut deep = String::new();
        for _ in 0..10 {
            deep.push_str("//a");
        }
        deep.push_str("//b");
        let addr = "/a".repeat(500);
        let (m, steps) = steps_for(deep.as_bytes(), addr.as_bytes());
        assert!(!m);
        // segments x segments, times a few bytes per segment comparison
        assert!(steps <= 22 * 501 * 4, "steps {steps}");
    }

    // ---- an independent, exponential reference used on small inputs ----

    fn reference(p: &[u8], a: &[u8]) -> bool {
        if validate(p).is_err() || a.first() != Some(&b'/') {
            return false;
        }
        let ps: Vec<&[u8]> = p[1..].split(|&b| b == b'/').collect();
        let asg: Vec<&[u8]> = a[1..].split(|&b| b == b'/').collect();
        let marks: Vec<bool> = (0..ps.len())
            .map(|i| ps[i].is_empty() && i + 1 < ps.len())
            .collect();
        ref_path(&ps, &marks, &asg)
    }

    fn ref_path(ps: &[&[u8]], marks: &[bool], asg: &[&[u8]]) -> bool {
        match ps.split_first() {
            None => asg.is_empty(),
            Some(_) if marks[0] => {
                (0..=asg.len()).any(|k| ref_path(&ps[1..], &marks[1..], &asg[k..]))
            }
            Some((seg, rest)) => {
                !asg.is_empty() && ref_seg(seg, asg[0]) && ref_path(rest, &marks[1..], &asg[1..])
            }
        }
    }

    fn ref_seg(p: &[u8], t: &[u8]) -> bool {
        let Some((&c, rest)) = p.split_first() else {
            return t.is_empty();
        };
        match c {
            b'*' => (0..=t.len()).any(|k| ref_seg(rest, &t[k..])),
            b'?' => !t.is_empty() && ref_seg(rest, &t[1..]),
            b'[' => {
                let end = rest.iter().position(|&b| b == b']').unwrap();
                let mut table = [false; 256];
                let (neg, body) = match rest[..end].first() {
                    Some(b'!') => (true, &rest[1..end]),
                    _ => (false, &rest[..end]),
                };
                let mut i = 0;
                while i < body.len() {
                    if i + 2 < body.len() && body[i + 1] == b'-' {
                        for x in body[i]..=body[i + 2] {
                            table[x as usize] = true;
                        }
                        i += 3;
                    } else {
                        table[body[i] as usize] = true;
                        i += 1;
                    }
                }
                !t.is_empty() && (table[t[0] as usize] != neg) && ref_seg(&rest[end + 1..], &t[1..])
            }
            b'{' => {
                let end = rest.iter().position(|&b| b == b'}').unwrap();
                rest[..end]
                    .split(|&b| b == b',')
                    .any(|alt| t.starts_with(alt) && ref_seg(&rest[end + 1..], &t[alt.len()..]))
            }
            _ => t.first() == Some(&c) && ref_seg(rest, &t[1..]),
        }
    }

    fn small_pattern() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop::sample::select(b"ab/*?[]{},!-".to_vec()), 0..12).prop_map(
            |mut v| {
                v.insert(0, b'/');
                v
            },
        )
    }

    /// Well-formed patterns built from tokens, so that a good share of them match.
    fn token_pattern() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            3 => prop::sample::select(vec!["a", "b", "-", "!", ",", "]"]),
            2 => Just("*"),
            1 => Just("?"),
            1 => prop::sample::select(vec!["[ab]", "[!a]", "[a-b]", "[-a]", "[b-]", "[]", "[!]"]),
            1 => prop::sample::select(vec!["{a,b}", "{a,ab}", "{,a}", "{}", "{b,ba,}"]),
        ];
        let seg = prop_oneof![
            6 => proptest::collection::vec(token, 0..4).prop_map(|t| t.concat()),
            1 => Just(String::new()),
        ];
        proptest::collection::vec(seg, 1..5)
            .prop_map(|segs| format!("/{}", segs.join("/")).into_bytes())
    }

    fn small_address() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop::sample::select(b"ab/-,!".to_vec()), 0..10).prop_map(
            |mut v| {
                v.insert(0, b'/');
                v
            },
        )
    }

    fn literal_segment() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("literal byte", |b| {
                !matches!(b, b'/' | b'?' | b'*' | b'[' | b'{')
            }),
            1..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_reference(p in small_pattern(), a in small_address()) {
            prop_assert_eq!(matches(&p, &a), reference(&p, &a), "{:?} vs {:?}",
                String::from_utf8_lossy(&p), String::from_utf8_lossy(&a));
        }

        #[test]
        fn agrees_with_reference_on_well_formed(p in token_pattern(), a in small_address()) {
            prop_assert_eq!(matches(&p, &a), reference(&p, &a), "{:?} vs {:?}",
                String::from_utf8_lossy(&p), String::from_utf8_lossy(&a));
        }

        #[test]
        fn greedy_and_automaton_agree(
            p in proptest::collection::vec(prop::sample::select(b"ab*?[]!-".to_vec()), 0..10),
            t in proptest::collection::vec(prop::sample::select(b"ab-!".to_vec()), 0..10),
        ) {
            prop_assume!(validate_segment(&p, 1).is_ok());
            let mut s = 0;
            prop_assert_eq!(match_greedy(&p, &t, &mut s), match_braces(&p, &t, &mut s));
        }

        #[test]
        fn literal_address_matches_itself(segs in proptest::collection::vec(literal_segment(), 1..6)) {
            let addr: Vec<u8> = segs.iter().flat_map(|s| std::iter::once(b'/').chain(s.iter().copied())).collect();
            prop_assert!(matches(&addr, &addr));
        }

        #[test]
        fn star_segment_matches_any_segment(
            segs in proptest::collection::vec(literal_segment(), 1..6),
            pick in any::<prop::sample::Index>(),
        ) {
            let k = pick.index(segs.len());
            let build = |star: bool| -> Vec<u8> {
                let mut out = Vec::new();
                for (i, s) in segs.iter().enumerate() {
                    out.push(b'/');
                    if star && i == k { out.push(b'*') } else { out.extend_from_slice(s) }
                }
                out
            };
            prop_assert!(matches(&build(true), &build(false)));
            let mut deeper = build(false);
            deeper.extend_from_slice(b"/extra");
            prop_assert!(!matches(&build(true), &deeper));
        }

        #[test]
        fn never_panics_and_malformed_never_matches(
            p in proptest::collection::vec(any::<u8>(), 0..64),
            a in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let m = matches(&p, &a);
            if validate(&p).is_err() {
                prop_assert!(!m);
            }
            let _ = is_pattern(&p);
            let _ = matches_validated(&p, &a);
        }
    }
}
