//! The incremental request parser.
//!
//! Clients send each command as an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`),
//! or, typed into a terminal, as an inline line of words (`GET k\r\n`). The
//! parser takes whatever bytes have arrived: a complete request is split off the
//! front of the buffer (its arguments share the buffer's memory); an incomplete
//! one stays, and the parser remembers how far it got, so a large request that
//! trickles in is not re-read from the start. Every length is checked against
//! [`RedisLimits`] before anything is buffered for it, and anything malformed is a
//! [`ProtocolError`], after which the connection is closed (there is no way to
//! find the next request in a broken stream).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::limits::RedisLimits;

/// Longest `*<count>` or `$<length>` header line, CRLF included: a sign, 19
/// digits and slack. A longer one is not a number we accept anyway.
const MAX_HEADER_BYTES: usize = 24;

/// Why the bytes are not a request. The message follows Redis's wording where
/// Redis has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// The `*` count is not a number or over the limit.
    #[error("Protocol error: invalid multibulk length")]
    BadArrayLength,
    /// An array element does not start with `$`.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// The `$` length is not a number or over the limit.
    #[error("Protocol error: invalid bulk length")]
    BadBulkLength,
    /// A bulk string is not followed by CRLF.
    #[error("Protocol error: a bulk string must end with CRLF")]
    MissingCrlf,
    /// The whole request would be larger than allowed.
    #[error("Protocol error: request larger than {0} bytes")]
    TooLarge(usize),
    /// An inline line is longer than allowed.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
}

/// A request in progress: an array header was read, some elements too.
#[derive(Debug)]
struct Partial {
    /// Elements the header announced.
    want: usize,
    /// Where each complete element's bytes are in the buffer.
    args: Vec<Range<usize>>,
    /// Where the next element starts.
    pos: usize,
}

/// Splits requests off the front of a connection's read buffer.
#[derive(Debug, Default)]
pub(crate) struct RequestParser {
    partial: Option<Partial>,
}

impl RequestParser {
    /// The next complete request (its arguments, the command name first), or
    /// `None` if more bytes are needed. Empty requests (`*0`, a blank line) are
    /// skipped, as Redis does.
    pub(crate) fn next(
        &mut self,
        buf: &mut BytesMut,
        limits: &RedisLimits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.partial.is_none() {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match inline(buf, limits)? {
                        Inline::Request(args) => return Ok(Some(args)),
                        Inline::Blank => continue,
                        Inline::Incomplete => return Ok(None),
                    }
                }
                let Some((count, header)) = header(buf, 0, ProtocolError::BadArrayLength)? else {
                    return Ok(None);
                };
                if count <= 0 {
                    // `*0` and `*-1` carry no command.
                    let _ = buf.split_to(header);
                    continue;
                }
                let want = usize::try_from(count)
                    .ok()
                    .filter(|&n| n <= limits.max_args)
                    .ok_or(ProtocolError::BadArrayLength)?;
                self.partial = Some(Partial {
                    want,
                    // Grown as elements arrive: the count alone allocates little.
                    args: Vec::with_capacity(want.min(16)),
                    pos: header,
                });
            }
            let partial = self.partial.as_mut().expect("set above");
            if !elements(partial, buf, limits)? {
                return Ok(None);
            }
            let done = self.partial.take().expect("set above");
            let frame = buf.split_to(done.pos).freeze();
            return Ok(Some(
                done.args.into_iter().map(|r| frame.slice(r)).collect(),
            ));
        }
    }
}

/// Reads elements into `p` until all are there (`true`) or the buffer ends.
fn elements(p: &mut Partial, buf: &BytesMut, limits: &RedisLimits) -> Result<bool, ProtocolError> {
    while p.args.len() < p.want {
        let Some(&tag) = buf.get(p.pos) else {
            return Ok(false);
        };
        if tag != b'$' {
            return Err(ProtocolError::ExpectedBulk(char::from(tag)));
        }
        let Some((len, header)) = header(buf, p.pos, ProtocolError::BadBulkLength)? else {
            return Ok(false);
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= limits.max_bulk_bytes)
            .ok_or(ProtocolError::BadBulkLength)?;
        let start = p.pos + header;
        let end = start + len;
        if end + 2 > limits.max_request_bytes {
            return Err(ProtocolError::TooLarge(limits.max_request_bytes));
        }
        if buf.len() < end + 2 {
            return Ok(false);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        p.args.push(start..end);
        p.pos = end + 2;
    }
    Ok(true)
}

/// Parses the `*<n>\r\n` or `$<n>\r\n` line at `at`: the number and the line's
/// length, or `None` if the line has not fully arrived.
fn header(
    buf: &[u8],
    at: usize,
    bad: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buf[at..];
    let window = &rest[..rest.len().min(MAX_HEADER_BYTES)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if rest.len() >= MAX_HEADER_BYTES {
            return Err(bad);
        }
        return Ok(None);
    };
    match window.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(bad),
    }
    let digits = &window[1..cr];
    let number = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && !d.starts_with('+'))
        .and_then(|d| d.parse::<i64>().ok())
        .ok_or(bad)?;
    Ok(Some((number, cr + 2)))
}

enum Inline {
    Request(Vec<Bytes>),
    Blank,
    Incomplete,
}

/// An inline command: one line of words separated by spaces or tabs. (Redis
/// also reads quotes in inline commands; keel does not: send arrays, as every
/// client library does, for arguments with spaces.)
fn inline(buf: &mut BytesMut, limits: &RedisLimits) -> Result<Inline, ProtocolError> {
    let window = &buf[..buf.len().min(limits.max_inline_bytes)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= limits.max_inline_bytes {
            return Err(ProtocolError::InlineTooLong);
        }
        return Ok(Inline::Incomplete);
    };
    let line = buf.split_to(nl + 1).freeze();
    let text = line.slice(..line.len() - 1);
    let text = match text.last() {
        Some(b'\r') => text.slice(..text.len() - 1),
        _ => text,
    };
    let mut args = Vec::new();
    let mut start = None;
    for (i, &b) in text.iter().enumerate() {
        let space = b == b' ' || b == b'\t';
        match (space, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                args.push(text.slice(s..i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        args.push(text.slice(s..));
    }
    if args.len() > limits.max_args {
        return Err(ProtocolError::BadArrayLength);
    }
    Ok(if args.is_empty() {
        Inline::Blank
    } else {
        Inline::Request(args)
    })
}

/// The wire form of a request: an array of bulk strings (what clients send).
#[cfg(test)]
pub(crate) fn encode_request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::redis::tests::limits;

    /// Every request in `data`, fed to the parser in pieces of `chunk` bytes;
    /// the error if one comes.
    fn parse_in_chunks(
        data: &[u8],
        chunk: usize,
    ) -> (Vec<Vec<Bytes>>, Option<ProtocolError>, usize) {
        let limits = limits();
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match parser.next(&mut buf, &limits) {
                    Ok(Some(args)) => out.push(args),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e), buf.len()),
                }
            }
        }
        (out, None, buf.len())
    }

    fn strs(args: &[Bytes]) -> Vec<&str> {
        args.iter()
            .map(|a| std::str::from_utf8(a).expect("utf8"))
            .collect()
    }

    #[test]
    fn arrays_and_inline_commands() {
        let mut data = encode_request(&[b"SET", b"k", b"v w"]);
        data.extend_from_slice(b"*0\r\n\r\n  PING  \t hi\r\nECHO x\n");
        data.extend_from_slice(&encode_request(&[b"GET", b""]));
        let (reqs, err, left) = parse_in_chunks(&data, 1000);
        assert_eq!(err, None);
        assert_eq!(left, 0);
        let reqs: Vec<Vec<&str>> = reqs.iter().map(|r| strs(r)).collect();
        assert_eq!(
            reqs,
            vec![
                vec!["SET", "k", "v w"],
                vec!["PING", "hi"],
                vec!["ECHO", "x"],
                vec!["GET", ""]
            ]
        );
    }

    #[test]
    fn malformed_frames_get_redis_errors() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*x\r\n", ProtocolError::BadArrayLength),
            (b"*1\r\n:5\r\n", ProtocolError::ExpectedBulk(':')),
            (b"*1\r\n$-1\r\n", ProtocolError::BadBulkLength),
            (b"*1\r\n$4097\r\n", ProtocolError::BadBulkLength),
            (b"*1\r\n$+1\r\nx\r\n", ProtocolError::BadBulkLength),
            (b"*1\r\n$1\r\nxy\r\n", ProtocolError::MissingCrlf),
            (b"*4097\r\n", ProtocolError::BadArrayLength),
            (b"*1\r\n$1x\r\n", ProtocolError::BadBulkLength),
            (
                b"*12345678901234567890123\r\n",
                ProtocolError::BadArrayLength,
            ),
            (b"*1\rx", ProtocolError::BadArrayLength),
        ];
        for (data, want) in cases {
            let (_, err, _) = parse_in_chunks(data, 100);
            assert_eq!(
                err.as_ref(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        let long_line = vec![b'a'; 64 << 10];
        assert_eq!(
            parse_in_chunks(&long_line, 4096).1,
            Some(ProtocolError::InlineTooLong)
        );
    }

    #[test]
    fn a_request_over_the_byte_limit_is_refused_before_it_is_buffered() {
        let limits = limits();
        let value = vec![b'v'; 1000];
        let mut data = format!("*{}\r\n", 70).into_bytes();
        for _ in 0..70 {
            data.extend_from_slice(&encode_request(&[&value])[4..]);
        }
        let (reqs, err, _) = parse_in_chunks(&data, 4096);
        assert!(reqs.is_empty());
        assert_eq!(err, Some(ProtocolError::TooLarge(limits.max_request_bytes)));
    }

    #[test]
    fn incomplete_input_waits_and_keeps_its_place() {
        let data = encode_request(&[b"SET", b"key", b"value"]);
        for cut in 0..data.len() {
            let limits = limits();
            let mut parser = RequestParser::default();
            let mut buf = BytesMut::from(&data[..cut]);
            assert_eq!(parser.next(&mut buf, &limits), Ok(None), "cut at {cut}");
            buf.extend_from_slice(&data[cut..]);
            let args = parser
                .next(&mut buf, &limits)
                .expect("valid")
                .expect("whole");
            assert_eq!(strs(&args), ["SET", "key", "value"]);
            assert!(buf.is_empty());
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            chunk in 1usize..64,
        ) {
            let _ = parse_in_chunks(&data, chunk);
        }

        #[test]
        fn random_bytes_after_a_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..256),
            count in 0usize..6,
        ) {
            let mut data = format!("*{count}\r\n$").into_bytes();
            data.extend_from_slice(&tail);
            let _ = parse_in_chunks(&data, 7);
        }

        #[test]
        fn valid_requests_round_trip_in_any_chunking(
            reqs in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
                1..8,
            ),
            chunk in 1usize..50,
        ) {
            let mut data = Vec::new();
            for r in &reqs {
                let args: Vec<&[u8]> = r.iter().map(Vec::as_slice).collect();
                data.extend_from_slice(&encode_request(&args));
            }
            let (got, err, left) = parse_in_chunks(&data, chunk);
            prop_assert_eq!(err, None);
            prop_assert_eq!(left, 0);
            let got: Vec<Vec<Vec<u8>>> = got
                .iter()
                .map(|r| r.iter().map(|a| a.to_vec()).collect())
                .collect();
            prop_assert_eq!(got, reqs);
        }

        #[test]
        fn mutated_requests_never_panic(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut data = encode_request(&refs);
            let i = at.index(data.len());
            data[i] = byte;
            let _ = parse_in_chunks(&data, 3);
        }
    }
}
