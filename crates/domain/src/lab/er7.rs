//! HL7 v2 ER7 text as feeds really send it: bytes in the character set MSH-18 declares, MLLP
//! framing, CR, LF or CRLF segment endings, FHS/BHS batch envelopes, escape sequences, and
//! DTM times with or without an offset. Parsing into segments, fields and components is the
//! `hl7-parser` crate's; this module prepares its input and reads its values.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use hl7_parser::Message;
use hl7_parser::message::{Segment, Separators};

/// MLLP start block, end block (followed by CR).
const MLLP_START: u8 = 0x0b;
const MLLP_END: u8 = 0x1c;

/// Whether a payload looks like ER7: `MSH`, `FHS` or `BHS` first, after MLLP framing and blanks.
pub fn looks_like_er7(payload: &[u8]) -> bool {
    let start = payload
        .iter()
        .position(|b| !(b.is_ascii_whitespace() || *b == MLLP_START || *b == 0xEF || *b == 0xBB || *b == 0xBF))
        .unwrap_or(payload.len());
    let head = &payload[start..];
    [b"MSH", b"FHS", b"BHS"].iter().any(|s| head.starts_with(*s))
}

/// The text of a payload in the character set its first MSH-18 names: `8859/1` (Latin-1),
/// `UNICODE UTF-8`, or ASCII/empty (read as UTF-8, which ASCII is a subset of); any other set
/// (`8859/15`, …) is refused by name rather than read wrongly. Bytes the declared set cannot hold
/// are refused with the reason, never replaced.
pub fn decode(payload: &[u8]) -> Result<String, String> {
    let charset = declared_charset(payload);
    match charset.as_deref() {
        Some(cs) if cs == "8859/1" || cs == "ISO-8859-1" || cs == "ISO IR100" => {
            Ok(payload.iter().map(|&b| char::from(b)).collect())
        }
        Some(cs) if cs.starts_with("8859/") => Err(format!(
            "MSH-18 declares the character set {cs}, which is not supported: send 8859/1, UNICODE UTF-8 or ASCII"
        )),
        Some(cs) if !matches!(cs, "ASCII" | "UNICODE UTF-8" | "UTF-8" | "UNICODE") => Err(format!(
            "MSH-18 declares the character set `{cs}`, which is not supported: send 8859/1, UNICODE UTF-8 or ASCII"
        )),
        _ => String::from_utf8(payload.to_vec()).map_err(|e| {
            format!(
                "byte {} is not valid {}: declare the character set in MSH-18 (8859/1 for Latin-1)",
                e.utf8_error().valid_up_to(),
                charset.as_deref().unwrap_or("ASCII/UTF-8 (MSH-18 is empty)")
            )
        }),
    }
}

/// MSH-18 of the first MSH, read from the bytes (MSH is ASCII up to there in every set).
fn declared_charset(payload: &[u8]) -> Option<String> {
    let at = payload.windows(4).position(|w| &w[..3] == b"MSH")?;
    let segment = &payload[at..];
    let end = segment
        .iter()
        .position(|b| matches!(*b, b'\r' | b'\n' | MLLP_END))
        .unwrap_or(segment.len());
    let segment = &segment[..end];
    let sep = *segment.get(3)?;
    // MSH-1 is the separator itself: MSH-18 is the 17th field after the segment name.
    let field = segment.split(|&b| b == sep).nth(17)?;
    let first = field
        .split(|&b| b == segment.get(4).copied().unwrap_or(b'^') || b == b'~')
        .next()?;
    let text = String::from_utf8_lossy(first).trim().to_ascii_uppercase();
    (!text.is_empty()).then_some(text)
}

/// The messages in a payload, each as CR-separated segments: MLLP framing bytes and blank lines
/// dropped, CR/LF/CRLF accepted (a payload with any CR ends segments with CR or CRLF only, so a
/// line feed inside a field stays text), FHS/BHS/BTS/FTS envelopes removed. `Err` when anything
/// but a batch header comes before the first MSH, or when a batch trailer (BTS-1) counts other
/// messages than the batch holds (a batch cut short).
pub fn split_messages(text: &str) -> Result<Vec<String>, String> {
    let cleaned: String = text
        .chars()
        .filter(|&c| c != char::from(MLLP_START) && c != char::from(MLLP_END) && c != '\u{feff}')
        .collect();
    let lines: Vec<&str> = if cleaned.contains('\r') {
        cleaned.split('\r').map(|l| l.trim_start_matches('\n')).collect()
    } else {
        cleaned.split('\n').collect()
    };
    let mut messages: Vec<Vec<&str>> = Vec::new();
    let mut batch_start = 0usize;
    for line in lines {
        let line = line.trim_end_matches([' ', '\t', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        let name = line.get(..3).unwrap_or(line);
        match name {
            "BHS" => batch_start = messages.len(),
            "BTS" => {
                let sep = line.chars().nth(3).unwrap_or('|');
                let count = line.split(sep).nth(1).map(str::trim).filter(|c| !c.is_empty());
                if let Some(count) = count {
                    let found = messages.len() - batch_start;
                    if count.parse::<usize>().ok() != Some(found) {
                        return Err(format!(
                            "the batch trailer (BTS-1) counts {count} messages but the batch holds {found}: it may have been cut short"
                        ));
                    }
                }
            }
            "FHS" | "FTS" => {}
            "MSH" => messages.push(vec![line]),
            _ => match messages.last_mut() {
                Some(m) => m.push(line),
                None => {
                    return Err(
                        "not an HL7 v2 message: the first segment is not MSH (nor a batch header FHS/BHS)".into(),
                    );
                }
            },
        }
    }
    if messages.is_empty() {
        return Err("not an HL7 v2 message: no MSH segment".into());
    }
    Ok(messages.into_iter().map(|m| m.join("\r")).collect())
}

/// Parse one message (CR-separated). Checks what the parser assumes (ASCII separators after
/// `MSH`) before handing it over.
pub fn parse(message: &str) -> Result<Message<'_>, String> {
    let head = message.as_bytes();
    if head.len() < 8 || !head[..8].is_ascii() || !head.starts_with(b"MSH") {
        return Err("the MSH segment is truncated: it must start `MSH|^~\\&|`".into());
    }
    let seps = &head[3..8];
    if seps
        .iter()
        .any(|b| b.is_ascii_alphanumeric() || b.is_ascii_whitespace())
    {
        return Err("MSH-1/MSH-2 do not declare separators (expected `|^~\\&`)".into());
    }
    let parsed = Message::parse(message).map_err(|_| "the message cannot be parsed as HL7 v2 ER7".to_owned())?;
    if parsed.raw_value().len() < message.len() {
        let segment = message[..parsed.raw_value().len()].matches('\r').count() + 1;
        return Err(format!("segment {segment} cannot be parsed as HL7 v2 ER7"));
    }
    Ok(parsed)
}

/// Decode the escape sequences of a value: `\F\ \S\ \T\ \R\ \E\`, `\Xhh…\` (bytes, read as
/// Latin-1 where they are not UTF-8), `\.br\` (a line break); formatting and character-set
/// switches (`\H\ \N\ \.sp\ \Cxxxx\ \Mxxxxxx\ \Zxx\`) are dropped. An unterminated escape is kept
/// as written.
pub fn unescape(value: &str, seps: &Separators) -> String {
    let esc = seps.escape;
    if !value.contains(esc) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(seps.field),
            "S" => out.push(seps.component),
            "T" => out.push(seps.subcomponent),
            "R" => out.push(seps.repetition),
            "E" => out.push(esc),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            s if s.starts_with(".sp") || s.starts_with(".in") || s.starts_with(".ti") || s == ".fi" || s == ".nf" => {
                out.push('\n')
            }
            s if s.starts_with('X') && s.len() > 1 && s.len() % 2 == 1 => match hex_bytes(&s[1..]) {
                Some(bytes) => match String::from_utf8(bytes.clone()) {
                    Ok(t) => out.push_str(&t),
                    Err(_) => out.extend(bytes.into_iter().map(char::from)),
                },
                None => {
                    out.push(esc);
                    out.push_str(s);
                    out.push(esc);
                }
            },
            s if s.starts_with('C') || s.starts_with('M') || s.starts_with('Z') => {}
            s => {
                out.push(esc);
                out.push_str(s);
                out.push(esc);
            }
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Read one field's component (1-based; repetition 1), unescaped; `None` when empty.
pub fn component(seg: &Segment<'_>, seps: &Separators, field: usize, comp: usize) -> Option<String> {
    let raw = seg.field(field)?.repeat(1)?.component(comp)?.raw_value();
    nonempty(unescape(raw, seps))
}

/// A field's first repetition as written (components and all), unescaped per component.
pub fn field_text(seg: &Segment<'_>, seps: &Separators, field: usize) -> Option<String> {
    let raw = seg.field(field)?.repeat(1)?.raw_value();
    nonempty(unescape(raw, seps))
}

fn nonempty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty() && t != "\"\"").then(|| t.to_owned())
}

/// An HL7 v2 DTM/TS (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`; TS may add `^precision`) as an
/// instant. Without an offset it is read in the hospital's time zone `tz` (a time that falls in
/// a spring-forward gap is read an hour later, a repeated autumn hour as its first occurrence).
pub fn instant(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.split('^').next().unwrap_or_default().trim();
    // The text is not quoted back: a date in the wrong field may be a birth date.
    let bad = || "not an HL7 v2 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])".to_owned();
    let (main, offset) = match text.find(['+', '-']) {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    let (digits, fraction) = main.split_once('.').unwrap_or((main, ""));
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        digits.get(r).map_or(Ok(0), |d| d.parse::<u32>().map_err(|_| bad()))
    };
    if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return Err(bad());
    }
    let year = i32::try_from(num(0..4)?).map_err(|_| bad())?;
    let month = if digits.len() >= 6 { num(4..6)? } else { 1 };
    let day = if digits.len() >= 8 { num(6..8)? } else { 1 };
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        let f: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
        f.parse::<u32>().map_err(|_| bad())?
    };
    let time = NaiveTime::from_hms_nano_opt(num(8..10)?, num(10..12)?, num(12..14)?, nanos).ok_or_else(bad)?;
    let local = NaiveDateTime::new(date, time);
    match offset {
        Some(off) => {
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let digits = &off[1..];
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let h: i64 = digits[..2].parse().map_err(|_| bad())?;
            let m: i64 = digits[2..].parse().map_err(|_| bad())?;
            if h > 14 || m > 59 {
                return Err(bad());
            }
            Ok((local - Duration::minutes(sign * (h * 60 + m))).and_utc())
        }
        None => tz
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(local + Duration::hours(1))).earliest())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> Tz {
        chrono_tz::Europe::London
    }

    #[test]
    fn times_without_an_offset_are_read_in_the_hospital_zone() {
        let t = |s: &str| instant(s, london()).map(|t| t.to_rfc3339());
        assert_eq!(t("20261127093000"), Ok("2026-11-27T09:30:00+00:00".into()));
        assert_eq!(t("202607150930"), Ok("2026-07-15T08:30:00+00:00".into()));
        assert_eq!(t("20260715093000+0200"), Ok("2026-07-15T07:30:00+00:00".into()));
        assert_eq!(t("20260715"), Ok("2026-07-14T23:00:00+00:00".into()));
        assert_eq!(t("20261127093000.25-0500"), Ok("2026-11-27T14:30:00.250+00:00".into()));
        // The spring-forward gap (01:30 on 29 March 2026 does not exist in London).
        assert_eq!(t("202603290130"), Ok("2026-03-29T01:30:00+00:00".into()));
        for bad in ["2026112", "20261327", "2026112709x", "20261127+25", ""] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escape_sequences_are_decoded_and_non_ascii_text_is_safe() {
        let seps = Separators::default();
        assert_eq!(unescape(r"a\F\b\S\c\T\d\R\e\E\f", &seps), r"a|b^c&d~e\f");
        assert_eq!(unescape(r"µmol\X41\ line\.br\two", &seps), "µmolA line\ntwo");
        assert_eq!(
            unescape(r"\H\bold\N\ and \Zcustom\ \Xzz\ tail\", &seps),
            r"bold and  \Xzz\ tail\"
        );
        assert_eq!(unescape(r"\XC2B5\mol", &seps), "µmol");
    }

    #[test]
    fn batches_mllp_and_line_endings_are_split_into_messages() {
        let text = "\x0bFHS|^~\\&\r\nBHS|^~\\&\r\nMSH|^~\\&|A\rPID|1\r\rMSH|^~\\&|B\r\nOBX|1\r\nBTS|2\rFTS|1\x1c\r";
        let m = split_messages(text).expect("split");
        assert_eq!(m, vec!["MSH|^~\\&|A\rPID|1", "MSH|^~\\&|B\rOBX|1"]);
        let lf = "MSH|^~\\&|A\nPID|1\n\nMSH|^~\\&|B\nOBX|1\n";
        assert_eq!(
            split_messages(lf).expect("LF"),
            vec!["MSH|^~\\&|A\rPID|1", "MSH|^~\\&|B\rOBX|1"]
        );
        // A line feed inside a field of a CR-separated message is text, not a segment end.
        let inside = "MSH|^~\\&|A\rOBX|1|TX|X||line one\nline two\r";
        assert_eq!(
            split_messages(inside).expect("split"),
            vec!["MSH|^~\\&|A\rOBX|1|TX|X||line one\nline two"]
        );
        let cut = "BHS|^~\\&\rMSH|^~\\&|A\rPID|1\rBTS|3\r";
        assert!(split_messages(cut).expect_err("cut short").contains("BTS-1"));
        assert!(split_messages("PID|1\rMSH|^~\\&").is_err());
        assert!(split_messages("\r\n").is_err());
    }

    #[test]
    fn the_character_set_is_the_one_msh_18_declares() {
        let latin1 = b"MSH|^~\\&|LAB||||20261127||ORU^R01|1|P|2.5|||||GBR|8859/1\rNTE|1||\xb5mol";
        assert!(decode(latin1).expect("latin-1").ends_with("µmol"));
        let utf8 = "MSH|^~\\&|LAB||||20261127||ORU^R01|1|P|2.5|||||GBR|UNICODE UTF-8\rNTE|1||µmol";
        assert!(decode(utf8.as_bytes()).expect("utf-8").ends_with("µmol"));
        let undeclared = b"MSH|^~\\&|LAB||||20261127||ORU^R01|1|P|2.5\rNTE|1||\xb5mol";
        assert!(decode(undeclared).expect_err("refused").contains("MSH-18"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator over ER7-ish alphabets: no input may panic the reader.
        let alphabet: &[u8] = b"MSH|^~\\&\r\nPIDOBXR0123456789.+-X\xb5\xc2\x0b\x1c ";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let len = (state % 64) as usize;
            let mut bytes = b"MSH|^~\\&|".to_vec();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(text) = decode(&bytes)
                && let Ok(messages) = split_messages(&text)
            {
                for m in messages {
                    if let Ok(parsed) = parse(&m) {
                        for s in parsed.segments() {
                            let _ = component(s, &parsed.separators, 3, 2);
                            let _ = field_text(s, &parsed.separators, 5);
                            let _ = s.field(7).map(|f| instant(f.raw_value(), london()));
                        }
                    }
                }
            }
        }
    }
}
