//! The log's two formats (`log.format`): which one is in force, and the text one —
//! `<time> <LEVEL> <message> key=value…`, one line per event.
//!
//! Text lines are for people and terminals, and much of what they show comes from the network
//! (SNI names, peers' error strings): no character that could end the line or drive a terminal
//! (C0, DEL, C1, Unicode line separators and bidi controls) is ever written raw. Values that are
//! not plain are quoted, so `key=value` pairs always split back the way they were written.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, Format, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use crate::model::config::LogFormat;

/// Whether lines are text (else JSON): read per line, so a reload changes it at once.
static TEXT: AtomicBool = AtomicBool::new(false);

/// Switches every log line to `format` from the next one on.
pub fn set_format(format: LogFormat) {
    TEXT.store(format == LogFormat::Text, Ordering::Relaxed);
}

/// The format in force.
pub fn current() -> LogFormat {
    if TEXT.load(Ordering::Relaxed) {
        LogFormat::Text
    } else {
        LogFormat::Json
    }
}

/// A value: as is when plain (ASCII letters, digits and `.:/_-[]@,+*`), else in double quotes
/// with `"` and `\` escaped; never a raw control character. Absent (`None`) is `-`.
pub struct Value<'a>(pub Option<&'a str>);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(v) = self.0 else {
            return f.write_str("-");
        };
        let plain = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:/_-[]@,+*".contains(&b));
        if plain {
            return f.write_str(v);
        }
        f.write_char('"')?;
        escape(f, v, true)?;
        f.write_char('"')
    }
}

/// Free text (a message): unquoted, control characters escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape(f, self.0, false)
    }
}

/// Characters never written raw: they end lines or steer terminals and text direction.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `s` with unsafe characters as `\n`, `\r`, `\t` or `\u{…}`, and (`quoted`) `"` and
/// `\` escaped; runs of safe characters are written whole.
fn escape(f: &mut impl fmt::Write, s: &str, quoted: bool) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '"' if quoted => "\\\"",
            '\\' if quoted => "\\\\",
            c if unsafe_char(c) => "",
            _ => continue,
        };
        f.write_str(&s[start..i])?;
        if escaped.is_empty() {
            write!(f, "\\u{{{:x}}}", c as u32)?;
        } else {
            f.write_str(escaped)?;
        }
        start = i + c.len_utf8();
    }
    f.write_str(&s[start..])
}

/// The time as every line starts: RFC 3339, UTC, microseconds (as in JSON lines).
pub fn timestamp() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_micros(SystemTime::now())
}

/// `tracing`'s event format: text or JSON as [`current`] says, per event.
pub struct EventFormat {
    json: Format<Json>,
}

impl Default for EventFormat {
    fn default() -> Self {
        EventFormat {
            json: format::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for EventFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if !TEXT.load(Ordering::Relaxed) {
            return self.json.format_event(ctx, writer, event);
        }
        text_event(&mut writer, event)
    }
}

/// One event as a text line.
fn text_event(writer: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result {
    let mut fields = TextFields::default();
    event.record(&mut fields);
    let meta = event.metadata();
    write!(writer, "{} {}", timestamp(), meta.level())?;
    if !fields.message.is_empty() {
        write!(writer, " {}", Escaped(&fields.message))?;
    }
    writer.write_str(&fields.line)?;
    // Our own modules' targets say nothing to an operator; a chosen one (`access`) or a
    // library's (`rustls`, `kube`) does.
    let target = fields.log_target.as_deref().unwrap_or(meta.target());
    if !target.starts_with("ch_edge_proxy") {
        write!(writer, " target={}", Value(Some(target)))?;
    }
    writeln!(writer)
}

/// An event's fields as ` key=value` text, the message apart.
#[derive(Default)]
struct TextFields {
    message: String,
    line: String,
    /// A `log` crate record's target (bridged by tracing-log as a field).
    log_target: Option<String>,
}

impl TextFields {
    fn value(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "log.target" => self.log_target = Some(value.to_owned()),
            // The bridge's other fields (module path, file, line) are noise here.
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.line, " {name}={}", Value(Some(value)));
            }
        }
    }

    fn raw(&mut self, field: &Field, value: impl fmt::Display) {
        let _ = write!(self.line, " {}={value}", field.name());
    }
}

impl Visit for TextFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.value(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here too, their Debug being their Display.
        self.value(field, &format!("{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.value(field, &value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.raw(field, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        Value(Some(s)).to_string()
    }

    #[test]
    fn plain_values_stay_bare_others_are_quoted() {
        assert_eq!(q("a.ch.test"), "a.ch.test");
        assert_eq!(q("ns/demo"), "ns/demo");
        assert_eq!(q("[::1]:9440"), "[::1]:9440");
        assert_eq!(q("probes,metrics"), "probes,metrics");
        assert_eq!(Value(None).to_string(), "-");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("x route=evil"), "\"x route=evil\"");
        assert_eq!(q("a=b"), "\"a=b\"");
        assert_eq!(q("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(q("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(q("grüße"), "\"grüße\"");
    }

    #[test]
    fn no_control_character_is_written_raw() {
        assert_eq!(q("a\nb"), "\"a\\nb\"");
        assert_eq!(q("a\r\tb"), "\"a\\r\\tb\"");
        assert_eq!(q("\u{1b}[31mred"), "\"\\u{1b}[31mred\"");
        assert_eq!(q("nul\0del\u{7f}"), "\"nul\\u{0}del\\u{7f}\"");
        assert_eq!(q("c1\u{9b}31m"), "\"c1\\u{9b}31m\"");
        assert_eq!(q("line\u{2028}sep"), "\"line\\u{2028}sep\"");
        assert_eq!(q("bidi\u{202e}txt"), "\"bidi\\u{202e}txt\"");
        // Messages are not quoted, but escaped the same way.
        assert_eq!(
            Escaped("cannot bind \"x\": a\nb\u{1b}c").to_string(),
            "cannot bind \"x\": a\\nb\\u{1b}c"
        );
        for c in (0..0x20u32).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let s = format!("x{c}y");
            for out in [q(&s), Escaped(&s).to_string()] {
                assert!(!out.chars().any(char::is_control), "{out:?}");
            }
        }
    }

    /// Formats events as text only (the global switch is left alone: tests run in parallel).
    struct TextOnly;

    impl<S, N> FormatEvent<S, N> for TextOnly
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'w> FormatFields<'w> + 'static,
    {
        fn format_event(
            &self,
            _: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            text_event(&mut writer, event)
        }
    }

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured(emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(TextOnly)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn events_are_one_line_of_message_and_key_values() {
        let error = std::io::Error::other("refused\n2026-12-07T00:00:00Z ERROR forged");
        let line = captured(|| {
            tracing::info!(routes = 12, listeners = 2, ok = true, "reload applied");
            tracing::warn!(
                target: "access",
                sni = "x y=z",
                address = %"127.0.0.1:9440",
                %error,
                "refused\tby \u{1b}[31mus"
            );
        });
        let lines: Vec<&str> = line.lines().collect();
        assert_eq!(lines.len(), 2, "{line}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{line}");
        assert_eq!(rest, "INFO reload applied routes=12 listeners=2 ok=true");
        let rest = lines[1].split_once(' ').unwrap().1;
        assert_eq!(
            rest,
            "WARN refused\\tby \\u{1b}[31mus sni=\"x y=z\" address=127.0.0.1:9440 \
             error=\"refused\\n2026-12-07T00:00:00Z ERROR forged\" target=access"
        );
    }

    #[test]
    fn format_switches_at_once() {
        set_format(LogFormat::Text);
        assert_eq!(current(), LogFormat::Text);
        set_format(LogFormat::Json);
        assert_eq!(current(), LogFormat::Json);
    }
}
