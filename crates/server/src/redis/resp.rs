//! Replies and their wire form in RESP2 (the default) and RESP3 (after `HELLO 3`).
//!
//! A [`Reply`] is built without knowing the protocol; [`Reply::encode`] picks the
//! form: a missing value is `$-1` in RESP2 and `_` in RESP3, a map is a flat array
//! of keys and values in RESP2 and a `%` map in RESP3, and verbatim text (INFO) is
//! a bulk string in RESP2.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// RESP2, what every client speaks first.
    Resp2,
    /// RESP3, chosen with `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// 2 or 3, as HELLO reports it.
    pub(crate) fn number(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A simple string (`+OK`): one line, no CR or LF.
    Simple(&'static str),
    /// An error: the code and message, e.g. `ERR unknown command 'x'`.
    Error(String),
    /// A signed 64-bit integer.
    Int(i64),
    /// A binary-safe string.
    Bulk(Bytes),
    /// No value (a missing key).
    Nil,
    /// A list of replies.
    Array(Vec<Reply>),
    /// Key-value pairs (HELLO, CONFIG GET).
    Map(Vec<(Reply, Reply)>),
    /// Text meant for people (INFO): verbatim `txt` in RESP3.
    Text(String),
}

impl Reply {
    /// `+OK`.
    pub(crate) const OK: Reply = Reply::Simple("OK");

    /// An error reply whose text starts with `ERR`.
    pub(crate) fn err(message: impl AsRef<str>) -> Reply {
        Reply::Error(format!("ERR {}", message.as_ref()))
    }

    /// A bulk string copied from text.
    pub(crate) fn text_bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Appends the wire form for `protocol` to `out`.
    pub(crate) fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(e) => line(out, b'-', one_line(e).as_bytes()),
            Reply::Int(n) => line(out, b':', n.to_string().as_bytes()),
            Reply::Bulk(b) => bulk(out, b'$', b"", b),
            Reply::Nil => match protocol {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => line(out, b'*', (pairs.len() * 2).to_string().as_bytes()),
                    Protocol::Resp3 => line(out, b'%', pairs.len().to_string().as_bytes()),
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Reply::Text(t) => match protocol {
                Protocol::Resp2 => bulk(out, b'$', b"", t.as_bytes()),
                Protocol::Resp3 => bulk(out, b'=', b"txt:", t.as_bytes()),
            },
        }
    }
}

/// `<tag><body>\r\n`.
fn line(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(tag);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

/// `<tag><len>\r\n<head><body>\r\n`, the length counting head and body.
fn bulk(out: &mut BytesMut, tag: u8, head: &[u8], body: &[u8]) {
    line(out, tag, (head.len() + body.len()).to_string().as_bytes());
    out.reserve(head.len() + body.len() + 2);
    out.put_slice(head);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

/// A line-framed reply cannot hold CR or LF: they become spaces, so a message
/// carrying user input (an unknown command's name) cannot break the framing.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply, p: Protocol) -> String {
        let mut out = BytesMut::new();
        r.encode(p, &mut out);
        String::from_utf8(out.to_vec()).expect("test replies are text")
    }

    #[test]
    fn both_protocols_share_the_basic_types() {
        for p in [Protocol::Resp2, Protocol::Resp3] {
            assert_eq!(wire(&Reply::OK, p), "+OK\r\n");
            assert_eq!(wire(&Reply::err("no"), p), "-ERR no\r\n");
            assert_eq!(wire(&Reply::Int(-42), p), ":-42\r\n");
            assert_eq!(wire(&Reply::text_bulk("hé"), p), "$3\r\nhé\r\n");
            assert_eq!(wire(&Reply::Bulk(Bytes::new()), p), "$0\r\n\r\n");
            assert_eq!(
                wire(&Reply::Array(vec![Reply::Int(1), Reply::text_bulk("a")]), p),
                "*2\r\n:1\r\n$1\r\na\r\n"
            );
            assert_eq!(wire(&Reply::Array(vec![]), p), "*0\r\n");
        }
    }

    #[test]
    fn nil_maps_and_text_differ_by_protocol() {
        let map = Reply::Map(vec![(Reply::text_bulk("proto"), Reply::Int(3))]);
        let text = Reply::Text("# Server\r\nx:1\r\n".into());
        assert_eq!(wire(&Reply::Nil, Protocol::Resp2), "$-1\r\n");
        assert_eq!(wire(&Reply::Nil, Protocol::Resp3), "_\r\n");
        assert_eq!(wire(&map, Protocol::Resp2), "*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(wire(&map, Protocol::Resp3), "%1\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(
            wire(&text, Protocol::Resp2),
            "$15\r\n# Server\r\nx:1\r\n\r\n"
        );
        assert_eq!(
            wire(&text, Protocol::Resp3),
            "=19\r\ntxt:# Server\r\nx:1\r\n\r\n"
        );
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(
            wire(&Reply::err("bad\r\nname"), Protocol::Resp2),
            "-ERR bad  name\r\n"
        );
    }
}
