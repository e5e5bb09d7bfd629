//! The small language of `keel txn`'s `--if`, `--then` and `--else` arguments.
//!
//! Comparisons (`--if`), on the state before the transaction:
//!
//! | text | holds when |
//! |---|---|
//! | `version(KEY)=N`, `!=N`, `<N`, `>N` | the key's version compares so with N (0: absent) |
//! | `absent(KEY)` | the key does not exist (same as `version(KEY)=0`) |
//! | `exists(KEY)` | the key exists (same as `version(KEY)>0`) |
//! | `value(KEY)=VALUE` | the key exists and its value is exactly VALUE |
//!
//! The key runs to the first `)`, so keys in comparisons cannot contain one.
//!
//! Operations (`--then`, `--else`): `put KEY VALUE` (the value is the rest of the
//! argument, spaces included), `del KEY` (or `delete`), `get KEY`.

use keel_client::{Compare, CompareOp, TxnOp};

/// Parses one `--if` argument.
pub(crate) fn parse_compare(text: &str) -> Result<Compare, String> {
    let text = text.trim();
    let (func, rest) = text.split_once('(').ok_or_else(|| {
        format!("{text:?}: expected version(KEY)=N, value(KEY)=V, absent(KEY) or exists(KEY)")
    })?;
    let (key, tail) = rest
        .split_once(')')
        .ok_or_else(|| format!("{text:?}: missing ')' after the key"))?;
    if key.is_empty() {
        return Err(format!("{text:?}: the key is empty"));
    }
    let key = key.to_string();
    match (func.trim(), tail.trim()) {
        ("absent", "") => Ok(Compare::absent(key)),
        ("exists", "") => Ok(Compare::exists(key)),
        ("value", tail) => match tail.strip_prefix('=') {
            Some(value) => Ok(Compare::value(key, value.to_string())),
            None => Err(format!("{text:?}: a value can only be compared with '='")),
        },
        ("version", tail) => {
            // Two-character operators first, so "!=" is not read as "!" then "=".
            let (op, number) = [
                ("!=", CompareOp::NotEqual),
                ("=", CompareOp::Equal),
                ("<", CompareOp::Less),
                (">", CompareOp::Greater),
            ]
            .into_iter()
            .find_map(|(sym, op)| tail.strip_prefix(sym).map(|n| (op, n)))
            .ok_or_else(|| format!("{text:?}: expected =, !=, < or > after version(KEY)"))?;
            let n = number
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{text:?}: {:?} is not a version number", number.trim()))?;
            Ok(Compare::version(key, op, n))
        }
        (func, _) => Err(format!(
            "{text:?}: unknown comparison {func:?}; use version, value, absent or exists"
        )),
    }
}

/// Parses one `--then` or `--else` argument.
pub(crate) fn parse_op(text: &str) -> Result<TxnOp, String> {
    let trimmed = text.trim_start();
    let (verb, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
    let rest = rest.trim_start();
    let single_key = |what: &str| {
        let key = rest.trim_end();
        if key.is_empty() || key.contains(' ') {
            Err(format!("{text:?}: expected {what} KEY"))
        } else {
            Ok(key.to_string())
        }
    };
    match verb {
        "put" | "set" => match rest.split_once(' ') {
            Some((key, value)) if !key.is_empty() => {
                Ok(TxnOp::put(key.to_string(), value.to_string()))
            }
            _ => Err(format!("{text:?}: expected put KEY VALUE")),
        },
        "del" | "delete" => Ok(TxnOp::delete(single_key("del")?)),
        "get" => Ok(TxnOp::get(single_key("get")?)),
        other => Err(format!(
            "{text:?}: unknown operation {other:?}; use put, del or get"
        )),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keel_client::CompareTarget;

    use super::*;

    fn target(text: &str) -> (String, CompareTarget) {
        let c = parse_compare(text).expect(text);
        (String::from_utf8_lossy(&c.key).into_owned(), c.target)
    }

    #[test]
    fn comparisons() {
        use CompareOp::*;
        let v = |k: &str, op, n| (k.to_string(), CompareTarget::Version(op, n));
        assert_eq!(target("version(k)=5"), v("k", Equal, 5));
        assert_eq!(target(" version(a/b) != 0 "), v("a/b", NotEqual, 0));
        assert_eq!(target("version(k)<7"), v("k", Less, 7));
        assert_eq!(target("version(k)>7"), v("k", Greater, 7));
        assert_eq!(target("absent(k)"), v("k", Equal, 0));
        assert_eq!(target("exists(k)"), v("k", Greater, 0));
        assert_eq!(
            target("value(k)=a b=c)"),
            (
                "k".to_string(),
                CompareTarget::Value(Bytes::from_static(b"a b=c)"))
            )
        );
        assert_eq!(
            target("value(k)="),
            ("k".to_string(), CompareTarget::Value(Bytes::new()))
        );
        for bad in [
            "version k=5",
            "version(k=5",
            "version()=5",
            "version(k)==5",
            "version(k)>=5",
            "version(k)=x",
            "value(k)!=v",
            "absent(k)=1",
            "size(k)=1",
        ] {
            assert!(parse_compare(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn operations() {
        assert_eq!(
            parse_op("put k hello world").expect("put"),
            TxnOp::put("k", "hello world")
        );
        assert_eq!(
            parse_op("put k ").expect("empty value"),
            TxnOp::put("k", "")
        );
        assert_eq!(parse_op("del k").expect("del"), TxnOp::delete("k"));
        assert_eq!(parse_op("delete k").expect("delete"), TxnOp::delete("k"));
        assert_eq!(parse_op("get k").expect("get"), TxnOp::get("k"));
        for bad in ["put k", "put", "get", "get a b", "del", "incr k"] {
            assert!(parse_op(bad).is_err(), "{bad}");
        }
    }
}
