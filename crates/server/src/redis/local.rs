//! Commands answered from the connection's and the node's own state: PING, ECHO,
//! HELLO, AUTH, CLIENT, SELECT, COMMAND, CONFIG GET, INFO, READMODE and QUIT.

use bytes::Bytes;
use keel_proto::v1::ReadMode;

use super::command::{Local, integer, syntax_error, wrong_args};
use super::conn::ConnState;
use super::resp::{Protocol, Reply};
use super::table::{COMMANDS, lookup};
use super::{Shared, info};

/// The Redis version whose protocol keel speaks, as HELLO and INFO report it
/// (clients compare it to decide which commands they may send).
pub(crate) const REDIS_VERSION: &str = "7.0.0";

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on reading requests.
    Continue,
    /// Send what is buffered, then close (QUIT).
    Close,
}

/// Parses the arguments of a local command (`name` is known and its arity
/// checked).
pub(crate) fn parse(name: &str, args: &[Bytes]) -> Result<Local, Reply> {
    let upper = |i: usize| args[i].to_ascii_uppercase();
    Ok(match name {
        "ping" if args.len() > 1 => return Err(wrong_args(name)),
        "ping" => Local::Ping(args.first().cloned()),
        "echo" => Local::Reply(Reply::Bulk(args[0].clone())),
        "quit" => Local::Quit,
        "auth" => match args {
            [password] | [_, password] => Local::Auth(password.clone()),
            _ => return Err(syntax_error()),
        },
        "select" => match integer(&args[0]) {
            Ok(0) => Local::Reply(Reply::OK),
            Ok(_) => Local::Reply(Reply::err(
                "DB index is out of range (keel has one database, 0)",
            )),
            Err(e) => return Err(e),
        },
        "hello" => hello(args)?,
        "client" => client(args)?,
        "command" => Local::Reply(command(args)?),
        "config" => Local::Reply(config(args)?),
        "info" => Local::Info(
            args.iter()
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect(),
        ),
        "readmode" => match args {
            [] => Local::ReadMode(None),
            [_] => Local::ReadMode(Some(match upper(0).as_slice() {
                b"LINEARIZABLE" => ReadMode::Linearizable,
                b"LEASE" => ReadMode::Lease,
                b"STALE" => ReadMode::Stale,
                b"DEFAULT" => ReadMode::Default,
                _ => {
                    return Err(Reply::err(
                        "READMODE takes linearizable, lease, stale or default",
                    ));
                }
            })),
            _ => return Err(wrong_args(name)),
        },
        other => unreachable!("{other} is not a local command"),
    })
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
fn hello(args: &[Bytes]) -> Result<Local, Reply> {
    let Some((version, mut rest)) = args.split_first() else {
        return Ok(Local::Hello {
            protocol: None,
            name: None,
            auth: None,
        });
    };
    let protocol = integer(version)
        .map_err(|_| Reply::err("Protocol version is not an integer or out of range"))?;
    if protocol != 2 && protocol != 3 {
        return Err(Reply::Error("NOPROTO unsupported protocol version".into()));
    }
    let mut name = None;
    let mut auth = None;
    while let Some((opt, more)) = rest.split_first() {
        match (opt.to_ascii_uppercase().as_slice(), more) {
            (b"AUTH", [_, password, ..]) => {
                auth = Some(password.clone());
                rest = &more[2..];
            }
            (b"SETNAME", [n, ..]) => {
                name = Some(checked_name(n)?);
                rest = &more[1..];
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Local::Hello {
        protocol: Some(protocol),
        name,
        auth,
    })
}

/// `CLIENT SETNAME|GETNAME|ID|SETINFO ...`.
fn client(args: &[Bytes]) -> Result<Local, Reply> {
    let sub = args[0].to_ascii_uppercase();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(Reply::err(format!(
                "wrong number of arguments for 'client|{}' command",
                String::from_utf8_lossy(&sub).to_ascii_lowercase()
            )))
        }
    };
    Ok(match sub.as_slice() {
        b"SETNAME" => {
            arity(2)?;
            Local::SetName(checked_name(&args[1])?)
        }
        b"GETNAME" => {
            arity(1)?;
            Local::GetName
        }
        b"ID" => {
            arity(1)?;
            Local::ClientId
        }
        // Libraries announce themselves; keel has nowhere to show it yet.
        b"SETINFO" => {
            arity(3)?;
            Local::Reply(Reply::OK)
        }
        _ => {
            return Err(Reply::err(format!(
                "unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&args[0])
            )));
        }
    })
}

/// A connection name: Redis refuses spaces and special characters.
fn checked_name(name: &Bytes) -> Result<Bytes, Reply> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Reply::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(name.clone())
}

/// `COMMAND`, `COMMAND COUNT|INFO|LIST|DOCS`.
fn command(args: &[Bytes]) -> Result<Reply, Reply> {
    let Some(sub) = args.first() else {
        return Ok(Reply::Array(COMMANDS.iter().map(|s| s.info()).collect()));
    };
    Ok(match sub.to_ascii_uppercase().as_slice() {
        b"COUNT" => Reply::Int(COMMANDS.len() as i64),
        b"LIST" => Reply::Array(COMMANDS.iter().map(|s| Reply::text_bulk(s.name)).collect()),
        b"INFO" if args.len() == 1 => Reply::Array(COMMANDS.iter().map(|s| s.info()).collect()),
        b"INFO" => Reply::Array(
            args[1..]
                .iter()
                .map(|n| lookup(n).map_or(Reply::Nil, |s| s.info()))
                .collect(),
        ),
        // Documentation is for humans; docs/redis.md has it.
        b"DOCS" => Reply::Map(vec![]),
        _ => {
            return Err(Reply::err(format!(
                "unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(sub)
            )));
        }
    })
}

/// The settings `CONFIG GET` reports. keel is configured by `keel serve` flags
/// and its file; these are the Redis parameters clients commonly ask for, with
/// the values that describe keel: every write is in the fsync'd write-ahead log
/// (like an append-only file), there are no RDB snapshots, and one database.
const CONFIG: &[(&str, &str)] = &[("appendonly", "yes"), ("save", ""), ("databases", "1")];

/// `CONFIG GET parameter ...` (exact names or `*`); other subcommands refused.
fn config(args: &[Bytes]) -> Result<Reply, Reply> {
    if !args[0].eq_ignore_ascii_case(b"GET") {
        return Err(Reply::err(
            "keel supports only CONFIG GET: it is configured by `keel serve` flags and its --config file",
        ));
    }
    if args.len() < 2 {
        return Err(wrong_args("config|get"));
    }
    let wanted = |name: &str| {
        args[1..]
            .iter()
            .any(|p| p.as_ref() == b"*" || p.eq_ignore_ascii_case(name.as_bytes()))
    };
    Ok(Reply::Map(
        CONFIG
            .iter()
            .filter(|(name, _)| wanted(name))
            .map(|(name, value)| (Reply::text_bulk(name), Reply::text_bulk(value)))
            .collect(),
    ))
}

/// Answers a local command, changing the connection's state as it says.
pub(crate) fn run(cmd: &Local, shared: &Shared, conn: &mut ConnState) -> (Reply, Flow) {
    let reply = match cmd {
        Local::Reply(r) => r.clone(),
        Local::Ping(None) => Reply::Simple("PONG"),
        Local::Ping(Some(message)) => Reply::Bulk(message.clone()),
        Local::Quit => return (Reply::OK, Flow::Close),
        Local::Auth(password) => match authenticate(shared, conn, password) {
            Ok(()) => Reply::OK,
            Err(refused) => refused,
        },
        Local::Hello {
            protocol,
            name,
            auth,
        } => {
            // HELLO with a wrong password changes nothing.
            if let Some(password) = auth
                && let Err(refused) = authenticate(shared, conn, password)
            {
                return (refused, Flow::Continue);
            }
            if !conn.authenticated {
                return (
                    Reply::Error(
                        "NOAUTH HELLO must be called with the client already authenticated, \
                         otherwise the HELLO <proto> AUTH <user> <pass> option can be used"
                            .into(),
                    ),
                    Flow::Continue,
                );
            }
            if let Some(p) = protocol {
                conn.protocol = if *p == 3 {
                    Protocol::Resp3
                } else {
                    Protocol::Resp2
                };
            }
            if let Some(n) = name {
                conn.name = Some(n.clone());
            }
            hello_reply(shared, conn)
        }
        Local::SetName(n) => {
            // An empty name removes it.
            conn.name = (!n.is_empty()).then(|| n.clone());
            Reply::OK
        }
        Local::GetName => conn.name.clone().map_or(Reply::Nil, Reply::Bulk),
        Local::ClientId => Reply::Int(i64::try_from(conn.id).unwrap_or(i64::MAX)),
        Local::Info(sections) => Reply::Text(info::render(shared, sections)),
        Local::ReadMode(None) => Reply::text_bulk(mode_name(conn.read_mode)),
        Local::ReadMode(Some(mode)) => {
            conn.read_mode = *mode;
            Reply::OK
        }
    };
    (reply, Flow::Continue)
}

/// Checks `password` against the node's bearer token; on success the connection
/// may run every command.
fn authenticate(shared: &Shared, conn: &mut ConnState, password: &[u8]) -> Result<(), Reply> {
    let Some(check) = &shared.token else {
        return Err(Reply::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    if check.admit_password("redis", conn.peer, password) {
        conn.authenticated = true;
        Ok(())
    } else {
        Err(Reply::Error(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        ))
    }
}

fn mode_name(mode: ReadMode) -> &'static str {
    match mode {
        ReadMode::Default => "default",
        ReadMode::Linearizable => "linearizable",
        ReadMode::Lease => "lease",
        ReadMode::Stale => "stale",
    }
}

/// HELLO's answer: who the server is and what this connection speaks.
fn hello_reply(shared: &Shared, conn: &ConnState) -> Reply {
    let leader = shared.ctx.node.leader() == shared.ctx.id;
    let pair = |k: &str, v: Reply| (Reply::text_bulk(k), v);
    Reply::Map(vec![
        pair("server", Reply::text_bulk("keel")),
        pair("version", Reply::text_bulk(REDIS_VERSION)),
        pair("proto", Reply::Int(conn.protocol.number())),
        pair("id", Reply::Int(i64::try_from(conn.id).unwrap_or(i64::MAX))),
        pair("mode", Reply::text_bulk("standalone")),
        pair(
            "role",
            Reply::text_bulk(if leader { "master" } else { "replica" }),
        ),
        pair("modules", Reply::Array(vec![])),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(name: &str, words: &[&str]) -> Result<Local, Reply> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        parse(name, &args)
    }

    #[test]
    fn hello_checks_its_options() {
        assert_eq!(
            parse_words("hello", &["3", "SETNAME", "app"]),
            Ok(Local::Hello {
                protocol: Some(3),
                name: Some(Bytes::from_static(b"app")),
                auth: None,
            })
        );
        assert_eq!(
            parse_words("hello", &["4"]),
            Err(Reply::Error("NOPROTO unsupported protocol version".into()))
        );
        assert_eq!(
            parse_words("hello", &["3", "AUTH", "u", "p", "SETNAME", "n"]),
            Ok(Local::Hello {
                protocol: Some(3),
                name: Some(Bytes::from_static(b"n")),
                auth: Some(Bytes::from_static(b"p")),
            })
        );
        assert_eq!(
            parse_words("hello", &["3", "AUTH", "u"]),
            Err(syntax_error())
        );
        assert_eq!(parse_words("hello", &["2", "SETNAME"]), Err(syntax_error()));
        assert_eq!(
            parse_words("auth", &["default", "secret"]),
            Ok(Local::Auth(Bytes::from_static(b"secret")))
        );
        assert_eq!(parse_words("auth", &["a", "b", "c"]), Err(syntax_error()));
    }

    #[test]
    fn select_client_config_and_command() {
        assert_eq!(parse_words("select", &["0"]), Ok(Local::Reply(Reply::OK)));
        assert!(matches!(
            parse_words("select", &["1"]),
            Ok(Local::Reply(Reply::Error(e))) if e.contains("out of range")
        ));
        assert!(parse_words("client", &["SETNAME", "a b"]).is_err());
        assert_eq!(
            parse_words("client", &["setinfo", "lib-name", "redis-rs"]),
            Ok(Local::Reply(Reply::OK))
        );
        assert!(matches!(
            parse_words("client", &["KILL"]),
            Err(Reply::Error(e)) if e.contains("unknown subcommand 'KILL'")
        ));
        assert_eq!(
            parse_words("config", &["GET", "save"]),
            Ok(Local::Reply(Reply::Map(vec![(
                Reply::text_bulk("save"),
                Reply::text_bulk("")
            )])))
        );
        assert!(parse_words("config", &["SET", "save", ""]).is_err());
        assert_eq!(
            parse_words("command", &["COUNT"]),
            Ok(Local::Reply(Reply::Int(COMMANDS.len() as i64)))
        );
        assert!(matches!(
            parse_words("command", &["INFO", "get", "nope"]),
            Ok(Local::Reply(Reply::Array(a))) if a.len() == 2 && a[1] == Reply::Nil
        ));
        assert_eq!(
            parse_words("readmode", &["Lease"]),
            Ok(Local::ReadMode(Some(ReadMode::Lease)))
        );
        assert!(parse_words("readmode", &["fast"]).is_err());
    }
}
