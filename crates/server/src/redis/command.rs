//! From a request's arguments to a typed command, with every check that needs no
//! state: the command is known, its arity, options, numbers, and the sizes of
//! keys and values. A request that fails a check is answered with an error and
//! changes nothing.

use bytes::Bytes;
use keel_proto::v1::ReadMode;
use keel_storage::command::parse_integer;

use super::limits::RedisLimits;
use super::resp::Reply;
use super::scan::{Pattern, ScanArgs};
use super::table;
use crate::api::validate;

/// What a request asks for, grouped by how it is executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// Answered from the connection's or node's own state, at once.
    Local(Local),
    /// Reads the key space (after the read mode's barrier).
    Read(Read),
    /// Changes the key space (one proposal, or part of one).
    Write(Write),
}

/// Commands answered without the key space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Local {
    /// A reply known as soon as the command is parsed.
    Reply(Reply),
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `HELLO [protover [AUTH ..] [SETNAME name]]`.
    Hello {
        /// The protocol asked for (2 or 3).
        protocol: Option<i64>,
        /// A connection name to set.
        name: Option<Bytes>,
        /// The password of `AUTH username password` (the username is ignored).
        auth: Option<Bytes>,
    },
    /// `AUTH [username] password` (the username is ignored: keel has one token).
    Auth(Bytes),
    /// `CLIENT SETNAME name`.
    SetName(Bytes),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    ClientId,
    /// `INFO [section ...]`, sections in lower case.
    Info(Vec<String>),
    /// `READMODE [mode]` (keel's own): show or set the connection's read mode.
    ReadMode(Option<ReadMode>),
    /// `QUIT`: answer OK, then close.
    Quit,
}

/// Commands that read keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// `GET key`.
    Get(Bytes),
    /// `STRLEN key`.
    StrLen(Bytes),
    /// `TYPE key`: `string` or `none`.
    Type(Bytes),
    /// `MGET key ...`.
    MGet(Vec<Bytes>),
    /// `EXISTS key ...`: how many of the keys (repeats counted) exist.
    Exists(Vec<Bytes>),
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
    Scan(ScanArgs),
}

/// When a SET happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    /// Always.
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if it exists.
    IfExists,
}

/// Commands that change keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// `SET key value [NX|XX] [GET]`, `SETNX` (`int_reply`: 1 or 0) and `GETSET`
    /// (`SET key value GET`).
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// When it is set.
        cond: Cond,
        /// Answer with the old value.
        get: bool,
        /// Answer 1 or 0 (SETNX) instead of OK or nil.
        int_reply: bool,
    },
    /// `GETDEL key`.
    GetDel(Bytes),
    /// `DEL key ...` and `UNLINK key ...`.
    Del(Vec<Bytes>),
    /// `MSET key value ...`, atomically.
    MSet(Vec<(Bytes, Bytes)>),
    /// `MSETNX key value ...`: all or none, only if none exists.
    MSetNx(Vec<(Bytes, Bytes)>),
    /// `INCR`, `INCRBY`, `DECR`, `DECRBY`: add `delta` in the state machine.
    Add {
        /// The key.
        key: Bytes,
        /// What to add.
        delta: i64,
    },
}

impl Write {
    /// Whether this is a SET that always succeeds and answers OK: such SETs (and
    /// MSETs) from one pipeline can share one transaction.
    pub(crate) fn is_plain_set(&self) -> bool {
        matches!(
            self,
            Write::Set {
                cond: Cond::Always,
                get: false,
                int_reply: false,
                ..
            } | Write::MSet(_)
        )
    }
}

/// `ERR wrong number of arguments for 'x' command`.
pub(crate) fn wrong_args(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

/// `ERR syntax error`.
pub(crate) fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

/// `ERR value is not an integer or out of range`.
pub(crate) fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// Parses one request. `args` is never empty (the parser drops empty requests).
pub(crate) fn parse(args: &[Bytes], limits: &RedisLimits) -> Result<Cmd, Reply> {
    let Some((name, rest)) = args.split_first() else {
        return Err(Reply::err("empty command"));
    };
    let Some(spec) = table::lookup(name) else {
        return Err(unknown_command(name, rest));
    };
    if !spec.arity_ok(args.len()) {
        return Err(wrong_args(spec.name));
    }
    let key = |i: usize| checked_key(&rest[i]);
    let value = |i: usize| checked_value(&rest[i], limits);
    let set_with = |cond, get, int_reply| -> Result<Cmd, Reply> {
        Ok(Cmd::Write(Write::Set {
            key: key(0)?,
            value: value(1)?,
            cond,
            get,
            int_reply,
        }))
    };
    let cmd = match spec.name {
        "get" => Cmd::Read(Read::Get(key(0)?)),
        "strlen" => Cmd::Read(Read::StrLen(key(0)?)),
        "type" => Cmd::Read(Read::Type(key(0)?)),
        "mget" => Cmd::Read(Read::MGet(keys(rest)?)),
        "exists" => Cmd::Read(Read::Exists(keys(rest)?)),
        "scan" => Cmd::Read(Read::Scan(scan_args(rest, limits)?)),
        "set" => Cmd::Write(set(rest, limits)?),
        "setnx" => set_with(Cond::IfAbsent, false, true)?,
        "getset" => set_with(Cond::Always, true, false)?,
        "getdel" => Cmd::Write(Write::GetDel(key(0)?)),
        "del" | "unlink" => Cmd::Write(Write::Del(keys(rest)?)),
        "mset" | "msetnx" => {
            if rest.len() % 2 != 0 {
                return Err(wrong_args(spec.name));
            }
            let pairs = rest
                .chunks(2)
                .map(|p| Ok((checked_key(&p[0])?, checked_value(&p[1], limits)?)))
                .collect::<Result<Vec<_>, Reply>>()?;
            Cmd::Write(if spec.name == "mset" {
                Write::MSet(pairs)
            } else {
                Write::MSetNx(pairs)
            })
        }
        "incr" => add(key(0)?, 1),
        "decr" => add(key(0)?, -1),
        "incrby" => add(key(0)?, integer(&rest[1])?),
        "decrby" => {
            let by = integer(&rest[1])?;
            // -i64::MIN does not exist.
            let delta = by
                .checked_neg()
                .ok_or_else(|| Reply::err("decrement would overflow"))?;
            add(key(0)?, delta)
        }
        _ => Cmd::Local(super::local::parse(spec.name, rest)?),
    };
    Ok(cmd)
}

fn add(key: Bytes, delta: i64) -> Cmd {
    Cmd::Write(Write::Add { key, delta })
}

/// A number argument, by Redis's rules (and the same rules an add applies to
/// stored values).
pub(crate) fn integer(arg: &[u8]) -> Result<i64, Reply> {
    parse_integer(arg).ok_or_else(not_an_integer)
}

fn checked_key(key: &Bytes) -> Result<Bytes, Reply> {
    validate::key(key).map_err(|e| Reply::err(e.message))?;
    Ok(key.clone())
}

fn checked_value(value: &Bytes, limits: &RedisLimits) -> Result<Bytes, Reply> {
    validate::value(value, limits.max_value_bytes).map_err(|e| Reply::err(e.message))?;
    Ok(value.clone())
}

fn keys(args: &[Bytes]) -> Result<Vec<Bytes>, Reply> {
    args.iter().map(checked_key).collect()
}

/// `SET key value [NX|XX] [GET] [KEEPTTL]`. Expiry options are refused: keel
/// keeps no time-to-live (KEEPTTL, which keeps none, is accepted).
fn set(args: &[Bytes], limits: &RedisLimits) -> Result<Write, Reply> {
    let key = checked_key(&args[0])?;
    let value = checked_value(&args[1], limits)?;
    let mut cond = Cond::Always;
    let mut get = false;
    for opt in &args[2..] {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" if cond != Cond::IfExists => cond = Cond::IfAbsent,
            b"XX" if cond != Cond::IfAbsent => cond = Cond::IfExists,
            b"GET" => get = true,
            b"KEEPTTL" => {}
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => {
                return Err(Reply::err(
                    "keel does not expire keys: SET's EX, PX, EXAT and PXAT options are not supported",
                ));
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Write::Set {
        key,
        value,
        cond,
        get,
        int_reply: false,
    })
}

fn scan_args(args: &[Bytes], limits: &RedisLimits) -> Result<ScanArgs, Reply> {
    let cursor = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Reply::err("invalid cursor"))?;
    let mut pattern = Pattern::Prefix(Bytes::new());
    let mut count = 10usize;
    let mut strings_only = true;
    let mut opts = args[1..].iter();
    while let Some(opt) = opts.next() {
        let Some(arg) = opts.next() else {
            return Err(syntax_error());
        };
        match opt.to_ascii_uppercase().as_slice() {
            b"MATCH" => pattern = Pattern::parse(arg)?,
            b"COUNT" => {
                count = integer(arg)
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(syntax_error)?;
            }
            // Every key holds a string: any other type matches nothing.
            b"TYPE" => strings_only = arg.eq_ignore_ascii_case(b"string"),
            _ => return Err(syntax_error()),
        }
    }
    Ok(ScanArgs {
        cursor,
        pattern,
        count: count.min(limits.max_scan_keys),
        strings_only,
    })
}

/// Redis 7's wording: `ERR unknown command 'x', with args beginning with: 'a' 'b' `.
fn unknown_command(name: &[u8], args: &[Bytes]) -> Reply {
    let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(128)]).into_owned();
    let mut msg = format!(
        "unknown command '{}', with args beginning with: ",
        show(name)
    );
    for a in args.iter().take(16) {
        msg.push_str(&format!("'{}' ", show(a)));
    }
    Reply::err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::tests::limits;

    fn cmd(words: &[&str]) -> Result<Cmd, Reply> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        parse(&args, &limits())
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn err(r: Result<Cmd, Reply>) -> String {
        match r {
            Err(Reply::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn sets_with_options() {
        assert_eq!(
            cmd(&["set", "k", "v", "nx", "GET"]),
            Ok(Cmd::Write(Write::Set {
                key: b("k"),
                value: b("v"),
                cond: Cond::IfAbsent,
                get: true,
                int_reply: false
            }))
        );
        assert_eq!(err(cmd(&["SET", "k", "v", "NX", "XX"])), "ERR syntax error");
        assert_eq!(err(cmd(&["SET", "k", "v", "BOGUS"])), "ERR syntax error");
        assert!(err(cmd(&["SET", "k", "v", "EX", "10"])).contains("does not expire keys"));
        assert!(cmd(&["SET", "k", "v", "KEEPTTL"]).is_ok());
        assert_eq!(err(cmd(&["SET", "", "v"])), "ERR the key is empty");
        let big = "x".repeat(1001);
        assert!(err(cmd(&["SET", "k", &big])).contains("the value is 1001 bytes"));
        assert!(
            matches!(cmd(&["set", "k", "v"]), Ok(Cmd::Write(w)) if w.is_plain_set()),
            "a plain SET may share a transaction"
        );
    }

    #[test]
    fn counters_parse_their_numbers_like_redis() {
        assert_eq!(
            cmd(&["INCRBY", "n", "-5"]),
            Ok(Cmd::Write(Write::Add {
                key: b("n"),
                delta: -5
            }))
        );
        assert_eq!(
            cmd(&["DECRBY", "n", "5"]),
            Ok(Cmd::Write(Write::Add {
                key: b("n"),
                delta: -5
            }))
        );
        assert_eq!(
            err(cmd(&["INCRBY", "n", "1.5"])),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(cmd(&["DECRBY", "n", "-9223372036854775808"])),
            "ERR decrement would overflow"
        );
    }

    #[test]
    fn arity_and_unknown_commands() {
        assert_eq!(
            err(cmd(&["GET"])),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err(cmd(&["MSET", "a", "1", "b"])),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            err(cmd(&["FLUSHALL", "ASYNC"])),
            "ERR unknown command 'FLUSHALL', with args beginning with: 'ASYNC' "
        );
    }

    #[test]
    fn scan_options() {
        let Ok(Cmd::Read(Read::Scan(s))) = cmd(&["SCAN", "0", "MATCH", "user:*", "COUNT", "500"])
        else {
            panic!("a scan");
        };
        assert_eq!(s.pattern, Pattern::Prefix(b("user:")));
        assert_eq!(s.count, 100, "capped at the node's scan limit");
        assert_eq!(err(cmd(&["SCAN", "x"])), "ERR invalid cursor");
        assert_eq!(err(cmd(&["SCAN", "0", "COUNT", "0"])), "ERR syntax error");
        assert_eq!(err(cmd(&["SCAN", "0", "MATCH"])), "ERR syntax error");
        assert!(err(cmd(&["SCAN", "0", "MATCH", "a?c"])).contains("prefix*"));
    }
}
