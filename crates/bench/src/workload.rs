//! What the clients do: which keys, which values, how many reads.

use bytes::Bytes;
use serde::Serialize;

use crate::rng::Rng;

/// The kind of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A single-key read.
    Read,
    /// A single-key unconditional write.
    Write,
}

impl OpKind {
    /// `"read"` or `"write"`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
        }
    }
}

/// One operation to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Read or write.
    pub kind: OpKind,
    /// The key.
    pub key: Bytes,
}

/// The shape of the load, identical for every system under test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// Keys are `key-000000` .. `key-{keys-1}`, chosen uniformly.
    pub keys: u64,
    /// Size of every written value, in bytes.
    pub value_size: usize,
    /// Probability that an operation is a read (0.0: writes only).
    pub read_fraction: f64,
    /// Seed of every client's choices; client `i` uses `seed + i`.
    pub seed: u64,
}

impl Workload {
    /// The value every write carries: `value_size` printable bytes.
    pub fn value(&self) -> Bytes {
        let mut rng = Rng::new(self.seed);
        (0..self.value_size)
            .map(|_| b'a' + rng.below(26) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    /// The operations of client number `client`.
    pub fn ops(&self, client: usize) -> OpStream {
        OpStream {
            rng: Rng::new(self.seed.wrapping_add(client as u64)),
            keys: self.keys.max(1),
            read_fraction: self.read_fraction,
        }
    }
}

/// The name of key number `i`: `key-000042`.
pub fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{i:06}"))
}

/// An endless sequence of operations for one client.
#[derive(Clone, Debug)]
pub struct OpStream {
    rng: Rng,
    keys: u64,
    read_fraction: f64,
}

impl OpStream {
    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        // Draw the kind first, unconditionally, so that the key sequence does not
        // depend on the read fraction's edge cases.
        let read = self.rng.next_f64() < self.read_fraction;
        let key = key(self.rng.below(self.keys));
        Op {
            kind: if read { OpKind::Read } else { OpKind::Write },
            key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(read_fraction: f64) -> Workload {
        Workload {
            keys: 100,
            value_size: 256,
            read_fraction,
            seed: 3,
        }
    }

    #[test]
    fn keys_are_zero_padded_and_in_range() {
        assert_eq!(key(42), Bytes::from_static(b"key-000042"));
        assert_eq!(key(1_234_567), Bytes::from_static(b"key-1234567"));
        let mut ops = workload(0.5).ops(0);
        for _ in 0..1000 {
            let op = ops.next_op();
            let n: u64 = std::str::from_utf8(&op.key[4..])
                .expect("ascii")
                .parse()
                .expect("number");
            assert!(n < 100);
        }
    }

    #[test]
    fn read_fraction_is_respected() {
        let count_reads = |f: f64| {
            let mut ops = workload(f).ops(1);
            (0..10_000)
                .filter(|_| ops.next_op().kind == OpKind::Read)
                .count()
        };
        assert_eq!(count_reads(0.0), 0);
        assert_eq!(count_reads(1.0), 10_000);
        let quarter = count_reads(0.25);
        assert!((2_200..2_800).contains(&quarter), "{quarter}");
    }

    #[test]
    fn clients_differ_but_are_reproducible() {
        let w = workload(0.5);
        let first = |client| {
            let mut ops = w.ops(client);
            (0..20).map(|_| ops.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(first(0), first(0));
        assert_ne!(first(0), first(1));
    }

    #[test]
    fn values_have_the_requested_size() {
        assert_eq!(workload(0.0).value().len(), 256);
        let empty = Workload {
            value_size: 0,
            ..workload(0.0)
        };
        assert!(empty.value().is_empty());
    }
}
