//! `keel txn`: a transaction from the command line.
//!
//! ```text
//! keel txn --if 'absent(lock)' --then 'put lock me' --else 'get lock'
//! keel txn --if 'version(n)=41' --if 'value(mode)=on' --then 'put n 42' --then 'del cache/n'
//! ```
//!
//! Every `--if` must hold for the `--then` operations to run, otherwise the `--else`
//! ones run; the syntax is in `txn_spec.rs`. Exit code 0 when the comparisons held,
//! 4 when they did not (and the `--else` branch was applied), otherwise as for the
//! other client commands.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use keel_client::{Txn, TxnOp, TxnOpResult, TxnResponse};
use serde_json::{Value as Json, json};

use crate::client_cmds::{ConnArgs, report};
use crate::txn_spec::{parse_compare, parse_op};

/// Exit code for "committed, but the comparisons did not hold".
const EXIT_ELSE_BRANCH: u8 = 4;

#[derive(Args, Debug)]
#[command(after_help = "\
Comparisons (--if), all of which must hold:
  version(KEY)=N   also !=, <, >; version 0 means the key is absent
  absent(KEY)      exists(KEY)
  value(KEY)=VALUE the key exists with exactly this value
Operations (--then, --else), run in order:
  put KEY VALUE    del KEY    get KEY
Exit code: 0 if the comparisons held, 4 if they did not (the --else branch ran).")]
pub(crate) struct TxnArgs {
    /// A comparison (repeatable), e.g. 'version(k)=5', 'absent(k)', 'value(k)=on'.
    #[arg(long = "if", value_name = "COMPARISON", value_parser = parse_compare)]
    compares: Vec<keel_client::Compare>,
    /// An operation run if every comparison holds (repeatable): 'put K V', 'del K',
    /// 'get K'.
    #[arg(long = "then", value_name = "OP", value_parser = parse_op)]
    success: Vec<TxnOp>,
    /// An operation run if a comparison does not hold (repeatable).
    #[arg(long = "else", value_name = "OP", value_parser = parse_op)]
    failure: Vec<TxnOp>,
    #[command(flatten)]
    conn: ConnArgs,
}

pub(crate) fn run(a: TxnArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = a.conn.client()?;
    let txn = Txn {
        compares: a.compares,
        success: a.success,
        failure: a.failure,
    };
    let result = rt.block_on(client.txn(txn.clone()));
    let r = match result {
        Ok(r) => r,
        Err(e) => return Ok(report(&e)),
    };
    let out = &mut std::io::stdout();
    let ops = if r.succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    if a.conn.json {
        writeln!(out, "{}", as_json(&r, ops))?;
    } else {
        write_text(out, &r, ops)?;
    }
    Ok(if r.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ELSE_BRANCH)
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The verb and key of an operation, as the user wrote them.
fn verb_and_key(op: &TxnOp) -> (&'static str, String) {
    match op {
        TxnOp::Put { key, .. } => ("put", text(key)),
        TxnOp::Delete { key } => ("del", text(key)),
        TxnOp::Get { key } => ("get", text(key)),
    }
}

fn write_text(out: &mut impl std::io::Write, r: &TxnResponse, ops: &[TxnOp]) -> anyhow::Result<()> {
    if r.succeeded {
        writeln!(
            out,
            "OK: the comparisons held; --then ran at revision {}",
            r.revision
        )?;
    } else {
        writeln!(
            out,
            "ELSE: a comparison did not hold; --else ran at revision {}",
            r.revision
        )?;
    }
    for (op, result) in ops.iter().zip(&r.results) {
        let (verb, key) = verb_and_key(op);
        let what = match result {
            TxnOpResult::Put => format!("OK version {}", r.revision),
            TxnOpResult::Delete { existed: true } => "deleted".to_string(),
            TxnOpResult::Delete { existed: false } => "no such key".to_string(),
            TxnOpResult::Get(Some(kv)) => format!("{} (version {})", text(&kv.value), kv.version),
            TxnOpResult::Get(None) => "not found".to_string(),
        };
        writeln!(out, "{verb} {key}: {what}")?;
    }
    Ok(())
}

/// The same shape as the HTTP API's answer to `POST /v1/txn`.
fn as_json(r: &TxnResponse, ops: &[TxnOp]) -> Json {
    let results: Vec<Json> = ops
        .iter()
        .zip(&r.results)
        .map(|(op, result)| {
            let key = verb_and_key(op).1;
            match result {
                TxnOpResult::Put => json!({"put": key, "version": r.revision}),
                TxnOpResult::Delete { existed } => json!({"delete": key, "deleted": existed}),
                TxnOpResult::Get(Some(kv)) => json!({
                    "get": key, "found": true, "value": text(&kv.value), "version": kv.version,
                }),
                TxnOpResult::Get(None) => json!({"get": key, "found": false}),
            }
        })
        .collect();
    json!({"succeeded": r.succeeded, "revision": r.revision, "results": results})
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keel_client::KeyValue;

    use super::*;

    #[test]
    fn results_print_per_operation() {
        let ops = [
            TxnOp::put("a", "1"),
            TxnOp::get("b"),
            TxnOp::delete("c"),
            TxnOp::get("d"),
        ];
        let r = TxnResponse {
            succeeded: true,
            revision: 9,
            results: vec![
                TxnOpResult::Put,
                TxnOpResult::Get(Some(KeyValue {
                    key: Bytes::from_static(b"b"),
                    value: Bytes::from_static(b"x y"),
                    version: 4,
                })),
                TxnOpResult::Delete { existed: false },
                TxnOpResult::Get(None),
            ],
        };
        let mut out = Vec::new();
        write_text(&mut out, &r, &ops).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "OK: the comparisons held; --then ran at revision 9\n\
             put a: OK version 9\n\
             get b: x y (version 4)\n\
             del c: no such key\n\
             get d: not found\n"
        );
        assert_eq!(
            as_json(&r, &ops)["results"],
            json!([
                {"put": "a", "version": 9},
                {"get": "b", "found": true, "value": "x y", "version": 4},
                {"delete": "c", "deleted": false},
                {"get": "d", "found": false},
            ])
        );
    }
}
