//! Text shared by the HLS playlists and the DASH MPD: decimal seconds,
//! dates, ISO 8601 durations, and the query suffix that rides on every URI.
//!
//! Both formats are read by many players with many parsers, so every value
//! is written one way only (milliseconds, UTC with a `Z`), and the one piece
//! of text that comes from a request, the query suffix, is cleaned here
//! before it can reach a quoted attribute or an XML document.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Whole milliseconds in `d`, rounded to the nearest.
pub(crate) fn millis_nearest(d: Duration) -> u128 {
    (d.as_nanos() + 500_000) / 1_000_000
}

/// Whole milliseconds in `d`, rounded up: for values that promise a bound
/// ("at least", "no part is longer than").
pub(crate) fn millis_up(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// `ms` milliseconds as seconds with three decimals: `1500` is `1.500`.
pub(crate) fn secs3(ms: u128) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// `ms` milliseconds as an ISO 8601 / `xs:duration` value: `PT1.500S`.
/// Seconds are not folded into minutes or hours; the schema allows any
/// number of seconds and every parser reads it.
pub(crate) fn iso_duration(ms: u128) -> String {
    format!("PT{}S", secs3(ms))
}

/// The latest instant `humantime` can write (the last millisecond of the
/// year 9999); its formatter fails past it and panics before 1970.
fn latest_date() -> SystemTime {
    UNIX_EPOCH + Duration::new(253_402_300_799, 999_000_000)
}

/// `t` as an RFC 3339 UTC date with milliseconds
/// (`2026-03-01T12:00:00.250Z`), the form both EXT-X-PROGRAM-DATE-TIME and
/// `xs:dateTime` take. Times outside 1970..=9999 are clamped: they only come
/// from a broken clock, and a playlist is better served with a wrong date
/// than with a panic.
pub(crate) fn date(t: SystemTime) -> String {
    let t = t.clamp(UNIX_EPOCH, latest_date());
    humantime::format_rfc3339_millis(t).to_string()
}

/// Bytes a URI query may not carry as they are: controls, space, the quote
/// that would end an HLS quoted-string, the characters RFC 3986 excludes,
/// and `'` (an XML attribute delimiter). Non-ASCII is always encoded.
const UNSAFE_IN_QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'\'')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'#');

/// The query suffix as it is appended to a URI: empty, or `?` and a query
/// in which nothing can break out of the attribute or line it lands in.
///
/// Callers pass `HlsQuery::rest`, which is already encoded, so normally this
/// borrows; anything else (a missing `?`, a stray quote or newline) is
/// repaired rather than trusted.
pub(crate) fn query_suffix(query: &str) -> Cow<'_, str> {
    let body = query.strip_prefix('?').unwrap_or(query);
    if body.is_empty() {
        return Cow::Borrowed("");
    }
    // `%` is left as is: the query arrives encoded, and encoding it again
    // would change what the server later decodes.
    let encoded: Cow<'_, str> = utf8_percent_encode(body, UNSAFE_IN_QUERY).into();
    match encoded {
        Cow::Borrowed(_) if query.starts_with('?') => Cow::Borrowed(query),
        encoded => Cow::Owned(format!("?{encoded}")),
    }
}

/// `s` escaped for an XML attribute value in double quotes.
pub(crate) fn xml_attr(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'', '\n', '\r', '\t']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute-value normalisation would turn these into spaces.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` without the characters that cannot sit inside an HLS quoted-string
/// (the quote itself, line ends, other controls). Codec strings come from
/// the stream; this keeps a malformed one from ending the attribute early.
pub(crate) fn hls_quoted(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '"' || c.is_control()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().filter(|&c| c != '"' && !c.is_control()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_have_three_decimals_and_round_the_right_way() {
        let d = Duration::from_micros(1_999_600);
        assert_eq!(secs3(millis_nearest(d)), "2.000");
        assert_eq!(
            secs3(millis_nearest(Duration::from_micros(1_000_400))),
            "1.000"
        );
        assert_eq!(secs3(millis_up(Duration::from_micros(1_000_400))), "1.001");
        assert_eq!(secs3(millis_up(Duration::from_millis(200))), "0.200");
        assert_eq!(secs3(0), "0.000");
        assert_eq!(iso_duration(1500), "PT1.500S");
        assert_eq!(iso_duration(3_600_000), "PT3600.000S");
    }

    #[test]
    fn dates_are_utc_with_milliseconds_and_never_panic() {
        let t = UNIX_EPOCH + Duration::new(1_772_366_400, 250_400_000);
        assert_eq!(date(t), "2026-03-01T12:00:00.250Z");
        assert_eq!(
            date(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(date(far), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_clean_query_is_borrowed_as_it_is() {
        assert!(matches!(query_suffix(""), Cow::Borrowed("")));
        assert!(matches!(query_suffix("?"), Cow::Borrowed("")));
        assert!(matches!(
            query_suffix("?token=a%2Bb&sid=42"),
            Cow::Borrowed("?token=a%2Bb&sid=42")
        ));
    }

    #[test]
    fn a_query_that_could_break_out_is_encoded() {
        assert_eq!(query_suffix("token=abc"), "?token=abc");
        assert_eq!(query_suffix("?t=a\"b"), "?t=a%22b");
        assert_eq!(query_suffix("?t=a\nb c"), "?t=a%0Ab%20c");
        assert_eq!(query_suffix("?t=<x>'#"), "?t=%3Cx%3E%27%23");
        assert_eq!(query_suffix("?t=é"), "?t=%C3%A9");
    }

    #[test]
    fn xml_attributes_are_escaped() {
        assert!(matches!(xml_attr("avc1.64001f"), Cow::Borrowed(_)));
        assert_eq!(
            xml_attr("a&b<c>\"d'\ne"),
            "a&amp;b&lt;c&gt;&quot;d&apos;&#10;e"
        );
    }

    #[test]
    fn quoted_strings_lose_what_would_end_them() {
        assert_eq!(hls_quoted("avc1.64001f,mp4a.40.2"), "avc1.64001f,mp4a.40.2");
        assert_eq!(hls_quoted("avc1\"\r\n,x"), "avc1,x");
    }
}
