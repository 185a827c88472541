//! A Server-Sent Events parser (the WHATWG "event stream interpretation", as LaunchDarkly's SSE
//! clients implement it; `ld-protocol.md` §4.2).
//!
//! The parser is pure: bytes go in as they arrive from the network, in chunks of any size, and
//! whole events come out. It accepts the three line endings (`\n`, `\r\n`, `\r`, including a
//! `\r\n` split across two chunks), strips one UTF-8 byte-order mark at the start of the stream,
//! reports comments (a heartbeat must reset the read timeout), joins multi-line `data`, keeps the
//! last event ID across events (to send as `Last-Event-ID` on reconnect) and honours `retry`.
//! A line longer than the configured limit is an error rather than unbounded memory: the server
//! is trusted with flag data, not with our heap.

use std::time::Duration;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `event` field, or `message` when the event had none.
    pub name: String,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The last event ID in effect when the event was dispatched (empty when none was ever set).
    pub id: String,
}

/// What the parser found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A complete event.
    Event(Event),
    /// A comment line (`:` and the text after it), which servers send as heartbeats.
    Comment(String),
    /// A `retry` field: the server's requested reconnection delay.
    Retry(Duration),
}

/// A line grew beyond the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a line of the event stream is longer than {limit} bytes")]
pub struct LineTooLong {
    /// The limit in bytes.
    pub limit: usize,
}

/// The incremental parser. Create one per connection; the last event ID is read back with
/// [`Parser::last_event_id`] and given to the next connection's parser.
#[derive(Debug)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`, so a `\n` starting this chunk ends nothing.
    after_cr: bool,
    /// Whether the start of the stream (where a BOM may be) has been passed.
    started: bool,
    event_name: String,
    data: String,
    /// Whether any `data` field was seen for the pending event.
    has_data: bool,
    last_event_id: String,
    max_line: usize,
}

/// The line buffer kept between lines; a longer one is freed after its line.
const KEPT_LINE_CAPACITY: usize = 64 * 1024;

impl Parser {
    /// A parser refusing lines longer than `max_line` bytes, starting with `last_event_id`.
    pub fn new(max_line: usize, last_event_id: String) -> Parser {
        Parser {
            line: Vec::new(),
            after_cr: false,
            started: false,
            event_name: String::new(),
            data: String::new(),
            has_data: false,
            last_event_id,
            max_line,
        }
    }

    /// The ID to send as `Last-Event-ID` when reconnecting (empty: send none).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Feeds a chunk and appends what it completes to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Item>) -> Result<(), LineTooLong> {
        if !self.started {
            // The BOM may itself arrive split over chunks; wait until three bytes are known.
            let mut pending = std::mem::take(&mut self.line);
            pending.extend_from_slice(chunk);
            if pending.len() < 3 && b"\xEF\xBB\xBF".starts_with(&pending) {
                self.line = pending;
                return Ok(());
            }
            self.started = true;
            let rest = pending
                .strip_prefix(b"\xEF\xBB\xBF")
                .unwrap_or(&pending)
                .to_vec();
            return self.push(&rest, out);
        }
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend_line(&chunk[..end])?;
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
            // The buffer is reused for the next line unless a long one (a `put` of every flag,
            // megabytes) grew it: that capacity would stay allocated for the stream's life.
            if line.capacity() <= KEPT_LINE_CAPACITY {
                self.line = line;
                self.line.clear();
            }
            if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => chunk = &chunk[end + 2..],
                    Some(_) => chunk = &chunk[end + 1..],
                    None => {
                        self.after_cr = true;
                        chunk = &[];
                    }
                }
            } else {
                chunk = &chunk[end + 1..];
            }
        }
        self.extend_line(chunk)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(LineTooLong {
                limit: self.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Item>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(line);
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(comment.to_owned()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_name),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // An ID containing NUL is ignored, as the standard says.
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_event_id),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    out.push(Item::Retry(Duration::from_millis(ms)));
                }
            }
            // Unknown fields are ignored.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        let name = std::mem::take(&mut self.event_name);
        if !self.has_data {
            // An event with no data is not dispatched; its name is forgotten.
            return;
        }
        self.has_data = false;
        out.push(Item::Event(Event {
            name: if name.is_empty() {
                "message".to_owned()
            } else {
                name
            },
            data: std::mem::take(&mut self.data),
            id: self.last_event_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    //! Modelled on the groups of LaunchDarkly's sse-contract-tests (`linefeeds`, `bom`,
    //! `comments`, `fields`, `multi-line data`, `id`, `retry`) plus chunking: every case is also
    //! fed one byte at a time, which must give the same items.
    use super::*;

    fn parse_with(input: &[u8], chunk: usize) -> Vec<Item> {
        let mut parser = Parser::new(1 << 20, String::new());
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            parser.push(piece, &mut out).unwrap();
        }
        out
    }

    fn parse(input: &str) -> Vec<Item> {
        let whole = parse_with(input.as_bytes(), usize::MAX);
        for size in [1, 2, 3, 7] {
            assert_eq!(
                parse_with(input.as_bytes(), size),
                whole,
                "chunks of {size} differ for {input:?}"
            );
        }
        whole
    }

    fn event(name: &str, data: &str) -> Item {
        Item::Event(Event {
            name: name.into(),
            data: data.into(),
            id: String::new(),
        })
    }

    #[test]
    fn every_line_ending_ends_lines_and_events() {
        for ending in ["\n", "\r\n", "\r"] {
            let input =
                format!("event: put{ending}data: {{}}{ending}{ending}data: two{ending}{ending}");
            assert_eq!(
                parse(&input),
                vec![event("put", "{}"), event("message", "two")],
                "ending {ending:?}"
            );
        }
        // Mixed endings in one stream.
        assert_eq!(
            parse("data: a\r\n\ndata: b\r\r\ndata: c\n\r"),
            vec![
                event("message", "a"),
                event("message", "b"),
                event("message", "c")
            ]
        );
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_ending() {
        let mut parser = Parser::new(1024, String::new());
        let mut out = Vec::new();
        parser.push(b"data: x\r", &mut out).unwrap();
        parser.push(b"\n\r", &mut out).unwrap();
        parser.push(b"\n", &mut out).unwrap();
        assert_eq!(out, vec![event("message", "x")]);
    }

    #[test]
    fn one_leading_bom_is_skipped_and_only_at_the_start() {
        assert_eq!(parse("\u{FEFF}data: a\n\n"), vec![event("message", "a")]);
        // A second BOM is part of the field name, which is then unknown.
        assert_eq!(parse("\u{FEFF}\u{FEFF}data: a\n\n"), vec![]);
        // A stream shorter than a BOM is kept until more arrives.
        let mut parser = Parser::new(1024, String::new());
        let mut out = Vec::new();
        parser.push(b"\xEF", &mut out).unwrap();
        parser.push(b"\xBB\xBFdata: z\n\n", &mut out).unwrap();
        assert_eq!(out, vec![event("message", "z")]);
    }

    #[test]
    fn comments_are_reported_and_do_not_disturb_events() {
        assert_eq!(
            parse(":hi\ndata: a\n: heartbeat\ndata: b\n\n:\n"),
            vec![
                Item::Comment("hi".into()),
                Item::Comment(" heartbeat".into()),
                event("message", "a\nb"),
                Item::Comment(String::new()),
            ]
        );
    }

    #[test]
    fn fields_follow_the_standard() {
        // No space after the colon; only one space is stripped; a line without a colon is a
        // field with an empty value; unknown fields are ignored; field names are case-sensitive.
        assert_eq!(parse("data:a\n\n"), vec![event("message", "a")]);
        assert_eq!(parse("data:  a\n\n"), vec![event("message", " a")]);
        assert_eq!(parse("data\n\n"), vec![event("message", "")]);
        assert_eq!(parse("data:\n\n"), vec![event("message", "")]);
        assert_eq!(parse("foo: bar\ndata: a\n\n"), vec![event("message", "a")]);
        assert_eq!(parse("Data: a\n\n"), vec![]);
        assert_eq!(parse("event: e\ndata: a: b\n\n"), vec![event("e", "a: b")]);
    }

    #[test]
    fn multi_line_data_is_joined_and_empty_events_are_not_dispatched() {
        assert_eq!(
            parse("data: a\ndata:\ndata: c\n\n"),
            vec![event("message", "a\n\nc")]
        );
        // An event with a name but no data is dropped, and the name does not leak into the next.
        assert_eq!(
            parse("event: lonely\n\ndata: x\n\n"),
            vec![event("message", "x")]
        );
        // An unfinished event at the end of the stream is not dispatched.
        assert_eq!(parse("data: a\n\ndata: b\n"), vec![event("message", "a")]);
    }

    #[test]
    fn the_last_event_id_persists_and_ignores_nul() {
        let items = parse("id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n");
        let ids: Vec<&str> = items
            .iter()
            .map(|i| match i {
                Item::Event(e) => e.id.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(ids, vec!["1", "1", "", ""]);
        // A reconnecting parser starts from the previous connection's ID.
        let mut parser = Parser::new(1024, "41".into());
        let mut out = Vec::new();
        parser.push(b"data: a\n\n", &mut out).unwrap();
        assert_eq!(parser.last_event_id(), "41");
        assert!(matches!(&out[0], Item::Event(e) if e.id == "41"));
    }

    #[test]
    fn retry_takes_digits_only() {
        assert_eq!(
            parse("retry: 2500\n\nretry: 1.5\nretry: x\nretry:\n"),
            vec![Item::Retry(Duration::from_millis(2500))]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(
            parse_with(b"data: a\xFFb\n\n", 1),
            vec![event("message", "a\u{FFFD}b")]
        );
    }

    proptest::proptest! {
        /// Untrusted bytes never panic the parser, and how the network splits them never
        /// changes what comes out.
        #[test]
        fn any_bytes_in_any_chunks_parse_the_same(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cuts in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let whole = parse_with(&input, usize::MAX);
            let mut parser = Parser::new(1 << 20, String::new());
            let mut out = Vec::new();
            let mut rest = &input[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*cut).min(rest.len()));
                parser.push(piece, &mut out).unwrap();
                rest = tail;
            }
            proptest::prop_assert_eq!(out, whole);
        }

        /// Events made of the SSE alphabet (fields, colons, line endings) survive too.
        #[test]
        fn sse_shaped_input_parses_the_same_byte_by_byte(
            input in "((event|data|id|retry|:)(: ?[a-z0-9{}\"]{0,8})?(\r\n|\n|\r)){0,30}",
        ) {
            proptest::prop_assert_eq!(
                parse_with(input.as_bytes(), 1),
                parse_with(input.as_bytes(), usize::MAX)
            );
        }
    }

    #[test]
    fn an_overlong_line_is_an_error() {
        let mut parser = Parser::new(8, String::new());
        let mut out = Vec::new();
        assert!(parser.push(b"data: 1234", &mut out).is_err());
        let mut parser = Parser::new(8, String::new());
        parser.push(b"data: 1\n\n", &mut out).unwrap();
        assert_eq!(out, vec![event("message", "1")]);
    }
}
