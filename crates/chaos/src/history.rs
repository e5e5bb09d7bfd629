//! The history of a run: every client operation with its invocation and completion
//! times and what the client learned, one JSON object a line (see `docs/chaos.md`).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Call {
    /// Read the key.
    Get,
    /// Write `value` unconditionally.
    Put {
        /// The value written (unique in a run).
        value: String,
    },
    /// Write `new` only if the key currently holds `expected` (`None`: only if the
    /// key is absent).
    Cas {
        /// The value the key must hold; `null` means the key must not exist.
        expected: Option<String>,
        /// The value written (unique in a run).
        new: String,
    },
}

impl Call {
    /// The value this call writes, if it writes.
    pub fn written(&self) -> Option<&str> {
        match self {
            Call::Get => None,
            Call::Put { value } => Some(value),
            Call::Cas { new, .. } => Some(new),
        }
    }

    /// `get`, `put` or `cas`.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Get => "get",
            Call::Put { .. } => "put",
            Call::Cas { .. } => "cas",
        }
    }
}

/// How the operation ended, as far as the client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The cluster answered success.
    Ok,
    /// The operation definitely had no effect (for a CAS with `conflict`, it also
    /// observed that the key did not hold `expected`).
    Fail,
    /// The operation may or may not have taken effect, at any time after its
    /// invocation.
    Unknown,
}

/// What the client learned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    /// `get` that succeeded: the value read; `null` if the key was absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `get` that succeeded on a present key: the value's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `put`/`cas` that succeeded: the revision (log index) it committed at, which
    /// is the new value's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// `cas` that failed because the key did not hold `expected`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conflict: bool,
    /// Why the operation failed or its outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history (unique).
    pub id: u64,
    /// The logical client that issued it. A client has at most one operation in
    /// flight; after an unknown outcome a worker continues as a new client.
    pub client: u64,
    /// The operation and its arguments.
    #[serde(flatten)]
    pub call: Call,
    /// The key.
    pub key: String,
    /// Nanoseconds since the run started (monotonic clock) when the call began.
    pub invoke_ns: u64,
    /// Nanoseconds since the run started when the answer (or the give-up) came.
    pub complete_ns: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// What the client learned.
    #[serde(default)]
    pub result: OpResult,
    /// A read made after the faults healed and the workload stopped, to check that
    /// no acknowledged write was lost.
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub final_read: bool,
}

impl Op {
    /// For a `get` that succeeded: the value read (`None`: absent).
    pub fn read_value(&self) -> Option<Option<&str>> {
        (matches!(self.call, Call::Get) && self.outcome == Outcome::Ok)
            .then_some(self.result.value.as_deref())
    }
}

/// Writes one op as a JSON line.
pub fn write_op(out: &mut impl Write, op: &Op) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, op)?;
    out.write_all(b"\n")
}

/// Reads a JSON-lines history; blank lines are skipped. Errors name the line.
pub fn read_history(input: impl BufRead) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(ops)
}

/// Reads a history file.
pub fn read_history_file(path: &std::path::Path) -> Result<Vec<Op>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_history(std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_shape() {
        let ops = vec![
            Op {
                id: 0,
                client: 1,
                call: Call::Get,
                key: "k1".into(),
                invoke_ns: 5,
                complete_ns: 9,
                outcome: Outcome::Ok,
                result: OpResult::default(),
                final_read: true,
            },
            Op {
                id: 1,
                client: 2,
                call: Call::Cas {
                    expected: None,
                    new: "v".into(),
                },
                key: "k1".into(),
                invoke_ns: 6,
                complete_ns: 12,
                outcome: Outcome::Fail,
                result: OpResult {
                    conflict: true,
                    ..OpResult::default()
                },
                final_read: false,
            },
            Op {
                id: 2,
                client: 3,
                call: Call::Put { value: "w".into() },
                key: "k1".into(),
                invoke_ns: 7,
                complete_ns: 13,
                outcome: Outcome::Unknown,
                result: OpResult {
                    error: Some("timed out".into()),
                    ..OpResult::default()
                },
                final_read: false,
            },
        ];
        let mut buf = Vec::new();
        for op in &ops {
            write_op(&mut buf, op).expect("write");
        }
        let text = String::from_utf8(buf.clone()).expect("utf8");
        assert!(
            text.contains(r#""op":"cas","expected":null,"new":"v""#),
            "{text}"
        );
        assert!(text.contains(r#""final":true"#), "{text}");
        assert_eq!(read_history(&buf[..]).expect("read"), ops);
        assert_eq!(ops[0].read_value(), Some(None));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = read_history(&b"\n{\"id\":1}\n"[..]).expect_err("invalid");
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
