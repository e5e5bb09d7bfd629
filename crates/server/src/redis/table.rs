//! The commands keel answers, with the facts Redis publishes about each through
//! `COMMAND`: arity, flags and where the keys are. Arity is checked here for
//! every command before it is parsed further.

use super::resp::Reply;

/// One command's published facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    /// Lower-case name.
    pub(crate) name: &'static str,
    /// Arguments including the name: `n` exactly, or `-n` for at least `n`.
    pub(crate) arity: i64,
    /// Redis's command flags (`write`, `readonly`, `fast`, ...).
    pub(crate) flags: &'static [&'static str],
    /// First key argument, last (-1: the last argument) and step; 0 when the
    /// command takes no keys.
    pub(crate) keys: (i64, i64, i64),
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
    }
}

const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write", "denyoom"];
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
const CONN: &[&str] = &["fast", "loading", "stale"];
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);
const NO_KEYS: (i64, i64, i64) = (0, 0, 0);

/// Every command keel answers, in the order `COMMAND` lists them.
pub(crate) const COMMANDS: &[Spec] = &[
    spec("get", 2, READ, ONE_KEY),
    spec("set", -3, WRITE, ONE_KEY),
    spec("setnx", 3, WRITE_FAST, ONE_KEY),
    spec("getset", 3, WRITE_FAST, ONE_KEY),
    spec("getdel", 2, &["write", "fast"], ONE_KEY),
    spec("del", -2, &["write"], ALL_KEYS),
    spec("unlink", -2, &["write", "fast"], ALL_KEYS),
    spec("exists", -2, READ, ALL_KEYS),
    spec("type", 2, READ, ONE_KEY),
    spec("strlen", 2, READ, ONE_KEY),
    spec("mget", -2, READ, ALL_KEYS),
    spec("mset", -3, WRITE, (1, -1, 2)),
    spec("msetnx", -3, WRITE, (1, -1, 2)),
    spec("incr", 2, WRITE_FAST, ONE_KEY),
    spec("incrby", 3, WRITE_FAST, ONE_KEY),
    spec("decr", 2, WRITE_FAST, ONE_KEY),
    spec("decrby", 3, WRITE_FAST, ONE_KEY),
    spec("scan", -2, &["readonly"], NO_KEYS),
    spec("ping", -1, &["fast", "stale"], NO_KEYS),
    spec("echo", 2, &["fast"], NO_KEYS),
    spec("info", -1, &["loading", "stale"], NO_KEYS),
    spec(
        "hello",
        -1,
        &["fast", "noauth", "loading", "stale"],
        NO_KEYS,
    ),
    spec("auth", -2, &["fast", "noauth", "loading", "stale"], NO_KEYS),
    spec("client", -2, &["loading", "stale"], NO_KEYS),
    spec("select", 2, CONN, NO_KEYS),
    spec("quit", -1, &["fast", "noauth", "loading", "stale"], NO_KEYS),
    spec("command", -1, &["loading", "stale"], NO_KEYS),
    spec("config", -2, &["admin", "loading", "stale"], NO_KEYS),
    spec("readmode", -1, CONN, NO_KEYS),
];

/// The spec of `name` (any case), if keel answers it.
pub(crate) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

impl Spec {
    /// Whether `args` (the name included) has an acceptable count.
    pub(crate) fn arity_ok(&self, args: usize) -> bool {
        let args = args as i64;
        if self.arity >= 0 {
            args == self.arity
        } else {
            args >= -self.arity
        }
    }

    /// The `COMMAND INFO` entry (Redis 7's ten fields; ACL categories, tips,
    /// key specs and subcommands are left empty).
    pub(crate) fn info(&self) -> Reply {
        let (first, last, step) = self.keys;
        let flags = self.flags.iter().map(|f| Reply::Simple(f)).collect();
        Reply::Array(vec![
            Reply::text_bulk(self.name),
            Reply::Int(self.arity),
            Reply::Array(flags),
            Reply::Int(first),
            Reply::Int(last),
            Reply::Int(step),
            Reply::Array(vec![]),
            Reply::Array(vec![]),
            Reply::Array(vec![]),
            Reply::Array(vec![]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_arity_counts_the_name() {
        let get = lookup(b"gEt").expect("known");
        assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
        let del = lookup(b"DEL").expect("known");
        assert!(del.arity_ok(2) && del.arity_ok(9) && !del.arity_ok(1));
        assert!(lookup(b"flushall").is_none());
    }

    #[test]
    fn names_are_unique_and_lower_case() {
        for (i, s) in COMMANDS.iter().enumerate() {
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert!(
                COMMANDS[..i].iter().all(|o| o.name != s.name),
                "{} twice",
                s.name
            );
        }
    }
}
