//! The text form of OSC used by `oscgate dump` and `oscgate send`.
//!
//! Printing: one line per message, `/address ,types arg arg ...`, in the spirit of liblo's
//! `oscdump`; a bundle prints a `#bundle <time tag>` line and its elements indented by two
//! spaces per level. Argument forms:
//!
//! | tag | printed as | example |
//! | --- | --- | --- |
//! | `i` `h` | decimal | `-3` |
//! | `f` `d` | shortest decimal that reads back to the same value | `2.5`, `NaN`, `inf` |
//! | `s` | double-quoted, `\"` `\\` `\n` `\t` `\xNN` escapes | `"hi"` |
//! | `S` | single-quoted, same escapes | `'sym'` |
//! | `c` | the character single-quoted, or `U+XXXX` if not printable | `'x'` |
//! | `b` | hex bytes in angle brackets | `<01ff>` |
//! | `t` | `seconds.fraction` in hex, as oscdump; `immediate` for 0.1 | `00000001.80000000` |
//! | `r` | `#rrggbbaa` | `#ff000080` |
//! | `m` | `midi:ppssddee` (port, status, data1, data2) | `midi:00903c64` |
//! | `T F N I` | `true false nil inf` | |
//! | `[ ]` | `[` `]` | |
//!
//! Parsing (for `send`): with an explicit type string (`,ifs`), each tag that takes a value
//! consumes one word, in the forms above without quotes (hex for `b`, `r`, `m`; `t` as
//! `immediate`, `SECONDS.FRACTION` in hex, or a decimal u64). Without a type string each word
//! is inferred: an integer is `i` (or `h` if it does not fit 32 bits), a decimal number is
//! `f`, `true`/`false`/`nil`/`inf` are `T`/`F`/`N`/`I`, anything else is `s`.

use std::fmt::{self, Write as _};

use crate::wire::{Arg, Packet, TimeTag};

/// Writes `packet` in the text form, one line per message (with a trailing newline each).
pub fn write_packet(out: &mut String, packet: &Packet<'_>) {
    write_indented(out, packet, 0);
}

fn write_indented(out: &mut String, packet: &Packet<'_>, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
    match packet {
        Packet::Message(m) => {
            escape_into(out, m.address(), None);
            out.push_str(" ,");
            escape_into(out, m.type_tags(), None);
            for a in m.args() {
                out.push(' ');
                let _ = write_arg(out, &a);
            }
            out.push('\n');
        }
        Packet::Bundle(b) => {
            let _ = writeln!(out, "#bundle {}", TimeTagText(b.timetag()));
            for e in b.elements() {
                write_indented(out, &e, level + 1);
            }
        }
    }
}

/// A time tag in the printed form.
pub struct TimeTagText(pub TimeTag);

impl fmt::Display for TimeTagText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == TimeTag::IMMEDIATE {
            f.write_str("immediate")
        } else {
            write!(f, "{:08x}.{:08x}", self.0.seconds, self.0.fraction)
        }
    }
}

fn write_arg(out: &mut String, a: &Arg<'_>) -> fmt::Result {
    match *a {
        Arg::Int(v) => write!(out, "{v}"),
        Arg::Long(v) => write!(out, "{v}"),
        // `{:?}` is the shortest form that reads back to the same value, and keeps `.0`.
        Arg::Float(v) => write!(out, "{v:?}"),
        Arg::Double(v) => write!(out, "{v:?}"),
        Arg::Str(s) => {
            out.push('"');
            escape_into(out, s, Some(b'"'));
            out.push('"');
            Ok(())
        }
        Arg::Symbol(s) => {
            out.push('\'');
            escape_into(out, s, Some(b'\''));
            out.push('\'');
            Ok(())
        }
        Arg::Char(c) => match char::from_u32(c) {
            Some(ch) if !ch.is_control() && ch != '\'' && ch != '\\' => write!(out, "'{ch}'"),
            _ => write!(out, "U+{c:04X}"),
        },
        Arg::Blob(b) => {
            out.push('<');
            for byte in b {
                write!(out, "{byte:02x}")?;
            }
            out.push('>');
            Ok(())
        }
        Arg::Time(t) => write!(out, "{}", TimeTagText(t)),
        Arg::Color(c) => write!(out, "#{:08x}", u32::from_be_bytes(c)),
        Arg::Midi(m) => write!(out, "midi:{:08x}", u32::from_be_bytes(m)),
        Arg::True => out.write_str("true"),
        Arg::False => out.write_str("false"),
        Arg::Nil => out.write_str("nil"),
        Arg::Inf => out.write_str("inf"),
        Arg::ArrayOpen => out.write_char('['),
        Arg::ArrayClose => out.write_char(']'),
    }
}

fn escape_into(out: &mut String, bytes: &[u8], quote: Option<u8>) {
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            _ if Some(b) == quote => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// A parsed argument for `send`, owning what it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum TextArg {
    Scalar(Arg<'static>),
    Str(String),
    Symbol(String),
    Blob(Vec<u8>),
}

impl TextArg {
    /// The argument as the writer takes it.
    pub fn as_arg(&self) -> Arg<'_> {
        match self {
            TextArg::Scalar(a) => *a,
            TextArg::Str(s) => Arg::Str(s.as_bytes()),
            TextArg::Symbol(s) => Arg::Symbol(s.as_bytes()),
            TextArg::Blob(b) => Arg::Blob(b),
        }
    }
}

/// Why command-line arguments could not be turned into OSC arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("type tag '{tag}' needs a value but the arguments ran out")]
    Missing { tag: char },
    #[error("{given} value(s) left over after the type string ,{tags}")]
    Extra { tags: String, given: usize },
    #[error("cannot read {word:?} as type '{tag}': {why}")]
    Bad {
        tag: char,
        word: String,
        why: &'static str,
    },
    #[error("unknown type tag '{0}' (known: i f s b h t d S c r m T F N I [ ])")]
    UnknownTag(char),
}

/// Parses `words` as OSC arguments: if the first word starts with `,` it is the type string,
/// otherwise types are inferred word by word.
pub fn parse_args(words: &[String]) -> Result<Vec<TextArg>, ArgError> {
    match words.first() {
        Some(first) if first.starts_with(',') => parse_typed(&first[1..], &words[1..]),
        _ => Ok(words.iter().map(|w| infer(w)).collect()),
    }
}

fn parse_typed(tags: &str, words: &[String]) -> Result<Vec<TextArg>, ArgError> {
    let mut words = words.iter();
    let mut out = Vec::with_capacity(tags.len());
    for tag in tags.chars() {
        let scalar = |a: Arg<'static>| Ok(TextArg::Scalar(a));
        let arg = match tag {
            'T' => scalar(Arg::True),
            'F' => scalar(Arg::False),
            'N' => scalar(Arg::Nil),
            'I' => scalar(Arg::Inf),
            '[' => scalar(Arg::ArrayOpen),
            ']' => scalar(Arg::ArrayClose),
            'i' | 'f' | 's' | 'b' | 'h' | 't' | 'd' | 'S' | 'c' | 'r' | 'm' => {
                let word = words.next().ok_or(ArgError::Missing { tag })?;
                parse_one(tag, word)
            }
            other => Err(ArgError::UnknownTag(other)),
        }?;
        out.push(arg);
    }
    let left = words.count();
    if left > 0 {
        return Err(ArgError::Extra {
            tags: tags.into(),
            given: left,
        });
    }
    Ok(out)
}

fn parse_one(tag: char, word: &str) -> Result<TextArg, ArgError> {
    let bad = |why| ArgError::Bad {
        tag,
        word: word.into(),
        why,
    };
    let scalar = |a| Ok(TextArg::Scalar(a));
    match tag {
        'i' => scalar(Arg::Int(
            parse_int::<i32>(word).ok_or(bad("not a 32-bit integer"))?,
        )),
        'h' => scalar(Arg::Long(
            parse_int::<i64>(word).ok_or(bad("not a 64-bit integer"))?,
        )),
        'f' => scalar(Arg::Float(word.parse().map_err(|_| bad("not a number"))?)),
        'd' => scalar(Arg::Double(word.parse().map_err(|_| bad("not a number"))?)),
        's' => Ok(TextArg::Str(no_nul(word).ok_or(bad("contains NUL"))?)),
        'S' => Ok(TextArg::Symbol(no_nul(word).ok_or(bad("contains NUL"))?)),
        'c' => {
            let mut chars = word.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => scalar(Arg::Char(c as u32)),
                _ => scalar(Arg::Char(
                    parse_int::<u32>(word).ok_or(bad("not one character"))?,
                )),
            }
        }
        'b' => Ok(TextArg::Blob(
            parse_hex(word).ok_or(bad("not hex bytes, e.g. 01ff"))?,
        )),
        'r' => scalar(Arg::Color(
            hex4(word.trim_start_matches('#')).ok_or(bad("not 8 hex digits rrggbbaa"))?,
        )),
        'm' => scalar(Arg::Midi(
            hex4(word.trim_start_matches("midi:")).ok_or(bad("not 8 hex digits"))?,
        )),
        't' => scalar(Arg::Time(
            parse_timetag(word)
                .ok_or(bad("not immediate, SECONDS.FRACTION (hex) or an integer"))?,
        )),
        other => Err(ArgError::UnknownTag(other)),
    }
}

/// Infers the type of one word (see the module documentation).
pub fn infer(word: &str) -> TextArg {
    match word {
        "true" => return TextArg::Scalar(Arg::True),
        "false" => return TextArg::Scalar(Arg::False),
        "nil" => return TextArg::Scalar(Arg::Nil),
        "inf" => return TextArg::Scalar(Arg::Inf),
        _ => {}
    }
    if let Ok(v) = word.parse::<i32>() {
        return TextArg::Scalar(Arg::Int(v));
    }
    if let Ok(v) = word.parse::<i64>() {
        return TextArg::Scalar(Arg::Long(v));
    }
    let numeric = word
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && word.bytes().any(|b| b.is_ascii_digit());
    if numeric {
        if let Ok(v) = word.parse::<f32>() {
            return TextArg::Scalar(Arg::Float(v));
        }
    }
    TextArg::Str(word.replace('\0', ""))
}

fn no_nul(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| s.to_string())
}

fn parse_int<T: TryFrom<i128>>(word: &str) -> Option<T> {
    let (neg, digits) = match word.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, word.strip_prefix('+').unwrap_or(word)),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i128>().ok()?,
    };
    T::try_from(if neg { -v } else { v }).ok()
}

fn parse_hex(word: &str) -> Option<Vec<u8>> {
    let w = word.strip_prefix("0x").unwrap_or(word);
    let w = w
        .strip_prefix('<')
        .and_then(|w| w.strip_suffix('>'))
        .unwrap_or(w);
    if w.len() % 2 != 0 {
        return None;
    }
    (0..w.len())
        .step_by(2)
        .map(|i| w.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn hex4(word: &str) -> Option<[u8; 4]> {
    parse_hex(word)?.try_into().ok()
}

fn parse_timetag(word: &str) -> Option<TimeTag> {
    if word == "immediate" {
        return Some(TimeTag::IMMEDIATE);
    }
    if let Some((s, f)) = word.split_once('.') {
        return Some(TimeTag {
            seconds: u32::from_str_radix(s, 16).ok()?,
            fraction: u32::from_str_radix(f, 16).ok()?,
        });
    }
    parse_int::<u64>(word).map(TimeTag::from_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{write_bundle, write_message};

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn args(v: &[TextArg]) -> Vec<Arg<'_>> {
        v.iter().map(TextArg::as_arg).collect()
    }

    #[test]
    fn typed_arguments() {
        let v = parse_args(&words(
            ",ifsbhtdScrmTFNI[i] 1 2.5 hi 01ff -7 immediate 0.25 sym x ff000080 00903c64 9",
        ))
        .unwrap();
        assert_eq!(
            args(&v),
            vec![
                Arg::Int(1),
                Arg::Float(2.5),
                Arg::Str(b"hi"),
                Arg::Blob(&[1, 0xff]),
                Arg::Long(-7),
                Arg::Time(TimeTag::IMMEDIATE),
                Arg::Double(0.25),
                Arg::Symbol(b"sym"),
                Arg::Char('x' as u32),
                Arg::Color([0xff, 0, 0, 0x80]),
                Arg::Midi([0, 0x90, 0x3c, 0x64]),
                Arg::True,
                Arg::False,
                Arg::Nil,
                Arg::Inf,
                Arg::ArrayOpen,
                Arg::Int(9),
                Arg::ArrayClose,
            ]
        );
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            parse_args(&words(",ii 1")),
            Err(ArgError::Missing { tag: 'i' })
        );
        assert!(matches!(
            parse_args(&words(",i 1 2")),
            Err(ArgError::Extra { given: 1, .. })
        ));
        assert!(matches!(
            parse_args(&words(",i x")),
            Err(ArgError::Bad { tag: 'i', .. })
        ));
        assert!(matches!(
            parse_args(&words(",i 3000000000")),
            Err(ArgError::Bad { .. })
        ));
        assert_eq!(parse_args(&words(",q 1")), Err(ArgError::UnknownTag('q')));
        assert!(matches!(
            parse_args(&words(",b abc")),
            Err(ArgError::Bad { tag: 'b', .. })
        ));
    }

    #[test]
    fn inferred_arguments() {
        let v = parse_args(&words(
            "1 2.5 hi true false nil inf 5000000000 -3 1e3 1.2.3",
        ))
        .unwrap();
        assert_eq!(
            args(&v),
            vec![
                Arg::Int(1),
                Arg::Float(2.5),
                Arg::Str(b"hi"),
                Arg::True,
                Arg::False,
                Arg::Nil,
                Arg::Inf,
                Arg::Long(5_000_000_000),
                Arg::Int(-3),
                Arg::Float(1000.0),
                Arg::Str(b"1.2.3"),
            ]
        );
    }

    #[test]
    fn prints_message_like_oscdump() {
        let mut p = Vec::new();
        let a = [
            Arg::Int(1),
            Arg::Float(2.5),
            Arg::str("h\"i\n"),
            Arg::Blob(&[1, 0xff]),
            Arg::Long(-7),
            Arg::Time(TimeTag {
                seconds: 1,
                fraction: 0x8000_0000,
            }),
            Arg::Double(1.0),
            Arg::Symbol(b"s"),
            Arg::Char('x' as u32),
            Arg::Color([0xff, 0, 0, 0x80]),
            Arg::Midi([0, 0x90, 0x3c, 0x64]),
            Arg::ArrayOpen,
            Arg::True,
            Arg::False,
            Arg::Nil,
            Arg::Inf,
            Arg::ArrayClose,
        ];
        write_message(&mut p, b"/cue/go", &a).unwrap();
        let mut s = String::new();
        write_packet(&mut s, &Packet::new_checked(&p).unwrap());
        assert_eq!(
            s,
            "/cue/go ,ifsbhtdScrm[TFNI] 1 2.5 \"h\\\"i\\n\" <01ff> -7 00000001.80000000 1.0 's' 'x' \
             #ff000080 midi:00903c64 [ true false nil inf ]\n"
        );
    }

    #[test]
    fn prints_bundles_indented() {
        let mut p = Vec::new();
        write_bundle(&mut p, TimeTag::IMMEDIATE, |b| {
            b.message(b"/a", &[Arg::Int(1)])?;
            b.bundle(TimeTag::from_u64(0x1_0000_0002), |i| i.message(b"/b", &[]))
        })
        .unwrap();
        let mut s = String::new();
        write_packet(&mut s, &Packet::new_checked(&p).unwrap());
        assert_eq!(
            s,
            "#bundle immediate\n  /a ,i 1\n  #bundle 00000001.00000002\n    /b ,\n"
        );
    }

    #[test]
    fn printed_arguments_parse_back() {
        let a = [
            Arg::Int(-4),
            Arg::Float(0.1),
            Arg::Double(1e300),
            Arg::Blob(&[0, 9]),
            Arg::Long(1 << 40),
        ];
        let mut p = Vec::new();
        write_message(&mut p, b"/x", &a).unwrap();
        let mut s = String::new();
        write_packet(&mut s, &Packet::new_checked(&p).unwrap());
        let mut w: Vec<String> = s.split_whitespace().skip(1).map(String::from).collect();
        w[0] = ",ifdbh".into();
        assert_eq!(args(&parse_args(&w).unwrap()), a);
    }
}
