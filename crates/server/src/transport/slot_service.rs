//! The serving side of the slot-move peer calls (`SlotFetch`, `SlotCommand`):
//! checks the request, finds the hosted group, and runs the copy engine or
//! proposes the command. Who is asking is checked before this, in
//! `service.rs`, exactly as for a snapshot offer.

use std::time::Duration;

use bytes::Bytes;
use keel_placement::Slot;
use keel_proto::raft::{
    SlotCommandReply, SlotFetchKind, SlotFetchReply, SlotFetchRequest, SlotItem,
};
use keel_raft::Index;
use keel_storage::command::{Command, SlotCommand};
use keel_storage::kv::ApplyOutcome;
use keel_storage::kv::slots::Changes;
use keel_storage::kv::slots::copy::{
    self, ChangePage, CopyError, MAX_PAGE_BYTES, MAX_VERSION_KEYS, SlotPage, ValuePage, VersionPage,
};
use tonic::Status;

use super::slot_wire::{item_to_wire, refusal_of, refusal_status, state_to_wire, view_to_wire};
use crate::api::node_error_detail;
use crate::node::{NodeError, NodeHandle};

/// How long a `SlotFetch` waits for its read barrier.
pub const FETCH_BARRIER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `SlotCommand` waits for its command to apply when the request
/// names no timeout.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a `SlotCommand` may ask for.
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a valid `SlotFetch` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FetchAsk {
    /// Keys with versions and values.
    Page {
        after_key: Option<Bytes>,
        max_bytes: usize,
    },
    /// Keys with versions.
    Versions {
        after_key: Option<Bytes>,
        max_keys: usize,
    },
    /// Named keys' versions and values.
    Values { keys: Vec<Bytes>, max_bytes: usize },
    /// The keys written since a baseline, by the change index (`None`: start
    /// tracking).
    Changes { since: Option<Index> },
}

/// A `SlotFetch` checked: its slot, epoch and what it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ValidFetch {
    pub slot: Slot,
    pub epoch: u64,
    pub ask: FetchAsk,
}

/// Checks a `SlotFetch`'s fields (not who sent it, nor the group): a slot in
/// range, an epoch, a known kind, and limits within the copy engine's caps.
pub(crate) fn validate_fetch(req: &SlotFetchRequest) -> Result<ValidFetch, Status> {
    let slot = u16::try_from(req.slot)
        .ok()
        .and_then(Slot::new)
        .ok_or_else(|| Status::invalid_argument(format!("slot {} out of range", req.slot)))?;
    if req.epoch == 0 {
        return Err(Status::invalid_argument("a slot move's epoch is never 0"));
    }
    // 0 asks for the cap; more than the cap gets the cap.
    let cap = |asked: u64, cap: usize| match usize::try_from(asked) {
        Ok(0) | Err(_) => cap,
        Ok(n) => n.min(cap),
    };
    let max_bytes = cap(req.max_bytes, MAX_PAGE_BYTES);
    let no_keys = |kind: &str| {
        if req.keys.is_empty() {
            Ok(())
        } else {
            Err(Status::invalid_argument(format!(
                "a {kind} fetch takes no key list"
            )))
        }
    };
    let ask = match SlotFetchKind::try_from(req.kind) {
        Ok(SlotFetchKind::Page) => {
            no_keys("PAGE")?;
            FetchAsk::Page {
                after_key: req.after_key.clone(),
                max_bytes,
            }
        }
        Ok(SlotFetchKind::Versions) => {
            no_keys("VERSIONS")?;
            FetchAsk::Versions {
                after_key: req.after_key.clone(),
                max_keys: cap(req.max_keys, MAX_VERSION_KEYS),
            }
        }
        Ok(SlotFetchKind::Values) => {
            if req.after_key.is_some() {
                return Err(Status::invalid_argument(
                    "a VALUES fetch names its keys, not a start key",
                ));
            }
            if req.keys.len() > MAX_VERSION_KEYS {
                return Err(Status::invalid_argument(format!(
                    "a VALUES fetch names at most {MAX_VERSION_KEYS} keys, not {}",
                    req.keys.len()
                )));
            }
            FetchAsk::Values {
                keys: req.keys.clone(),
                max_bytes,
            }
        }
        Ok(SlotFetchKind::Changes) => {
            no_keys("CHANGES")?;
            if req.after_key.is_some() {
                return Err(Status::invalid_argument(
                    "a CHANGES fetch names a baseline, not a start key",
                ));
            }
            FetchAsk::Changes { since: req.since }
        }
        _ => {
            return Err(Status::invalid_argument(format!(
                "unknown slot fetch kind {}",
                req.kind
            )));
        }
    };
    Ok(ValidFetch {
        slot,
        epoch: req.epoch,
        ask,
    })
}

/// Decodes a `SlotCommand`'s command, accepting only the six slot-move
/// commands: the peer service must not become a way around the client API's
/// checks for ordinary writes.
pub(crate) fn validate_command(data: &[u8]) -> Result<SlotCommand, Status> {
    match Command::decode(data) {
        Ok(Command::Slot(cmd)) => Ok(cmd),
        Ok(_) => Err(Status::invalid_argument(
            "only slot-move commands may be proposed through the peer service",
        )),
        Err(e) => Err(Status::invalid_argument(format!(
            "not a valid command: {e}"
        ))),
    }
}

/// The timeout a `SlotCommand` asked for, defaulted and capped.
pub(crate) fn command_timeout(timeout_ms: u64) -> Duration {
    match timeout_ms {
        0 => DEFAULT_COMMAND_TIMEOUT,
        ms => Duration::from_millis(ms).min(MAX_COMMAND_TIMEOUT),
    }
}

/// A node error as the client API answers it (`keel-error-bin`). The leader's
/// address is left empty: the caller knows addresses from the cluster map.
fn node_status(e: NodeError) -> Status {
    node_error_detail(e, |_| String::new()).into_status()
}

/// A copy error: refusals typed (FAILED_PRECONDITION), the rest INTERNAL.
fn copy_status(e: CopyError) -> Status {
    match refusal_of(&e) {
        Some(refusal) => refusal_status(&refusal, e.to_string()),
        None => Status::internal(format!("reading the slot failed: {e}")),
    }
}

/// Serves a checked `SlotFetch` from `node`'s replica: a read barrier first,
/// so the answer reflects everything committed before the call, then one
/// read view for the whole answer.
pub(crate) async fn fetch(node: NodeHandle, ask: ValidFetch) -> Result<SlotFetchReply, Status> {
    node.read_barrier(FETCH_BARRIER_TIMEOUT)
        .await
        .map_err(node_status)?;
    // Reading a page may touch up to a MiB of values on disk: off the runtime.
    tokio::task::spawn_blocking(move || read_page(node.kv(), ask))
        .await
        .map_err(|e| Status::internal(format!("the slot read stopped: {e}")))?
}

fn read_page(
    kv: &keel_storage::kv::KvStore,
    ValidFetch { slot, epoch, ask }: ValidFetch,
) -> Result<SlotFetchReply, Status> {
    let view = kv
        .read_view()
        .map_err(|e| Status::internal(format!("cannot open a read view: {e}")))?;
    let reply = match ask {
        FetchAsk::Page {
            after_key,
            max_bytes,
        } => {
            let SlotPage { source, puts, more } =
                copy::fetch_page(&view, slot, epoch, after_key.as_deref(), max_bytes)
                    .map_err(copy_status)?;
            SlotFetchReply {
                source: Some(view_to_wire(source)),
                items: puts.into_iter().map(item_to_wire).collect(),
                more,
                ..SlotFetchReply::default()
            }
        }
        FetchAsk::Versions {
            after_key,
            max_keys,
        } => {
            let VersionPage {
                source,
                versions,
                more,
            } = copy::fetch_versions(&view, slot, epoch, after_key.as_deref(), max_keys)
                .map_err(copy_status)?;
            SlotFetchReply {
                source: Some(view_to_wire(source)),
                items: versions
                    .into_iter()
                    .map(|(key, version)| SlotItem {
                        key,
                        version,
                        value: Bytes::new(),
                    })
                    .collect(),
                more,
                ..SlotFetchReply::default()
            }
        }
        FetchAsk::Values { keys, max_bytes } => {
            let ValuePage {
                source,
                puts,
                covered,
            } = copy::fetch_values(&view, slot, epoch, &keys, max_bytes).map_err(copy_status)?;
            SlotFetchReply {
                source: Some(view_to_wire(source)),
                items: puts.into_iter().map(item_to_wire).collect(),
                covered: covered as u64,
                ..SlotFetchReply::default()
            }
        }
        FetchAsk::Changes { since } => {
            let ChangePage { source, changes } =
                copy::fetch_changes(kv, &view, slot, epoch, since).map_err(copy_status)?;
            let (keys, complete, tracked_from) = match changes {
                Changes::Listed(keys) => (keys, true, 0),
                Changes::Unknown { from } => (Vec::new(), false, from),
            };
            SlotFetchReply {
                source: Some(view_to_wire(source)),
                items: keys
                    .into_iter()
                    .map(|key| SlotItem {
                        key,
                        ..SlotItem::default()
                    })
                    .collect(),
                complete,
                tracked_from,
                ..SlotFetchReply::default()
            }
        }
    };
    Ok(reply)
}

/// Proposes a checked slot-move command through `node` (the leader, else
/// NOT_LEADER naming it) and answers what the state machine did.
pub(crate) async fn propose(
    node: &NodeHandle,
    cmd: SlotCommand,
    timeout: Duration,
) -> Result<SlotCommandReply, Status> {
    // Re-encoded from the decoded command: the log gets the canonical form.
    let data = Command::Slot(cmd).encode();
    let outcome = node.write(data, timeout).await.map_err(node_status)?;
    let applied_index = node.kv().applied_index();
    match outcome {
        ApplyOutcome::SlotStep {
            state,
            keys_removed,
        } => Ok(SlotCommandReply {
            applied_index,
            refused: false,
            refusal: String::new(),
            state: Some(state_to_wire(state)),
            keys_removed,
        }),
        ApplyOutcome::SlotStepRefused(why) => Ok(SlotCommandReply {
            applied_index,
            refused: true,
            refusal: why.to_string(),
            state: None,
            keys_removed: 0,
        }),
        other => Err(Status::internal(format!(
            "a slot-move command applied with an unexpected outcome: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_storage::command::{Expect, MoveStep};

    fn fetch(kind: SlotFetchKind) -> SlotFetchRequest {
        SlotFetchRequest {
            slot: 7,
            epoch: 3,
            kind: kind.into(),
            ..SlotFetchRequest::default()
        }
    }

    #[test]
    fn limits_default_to_and_are_capped_at_the_engine_caps() {
        let mut req = fetch(SlotFetchKind::Page);
        let ask = validate_fetch(&req).expect("valid").ask;
        assert_eq!(
            ask,
            FetchAsk::Page {
                after_key: None,
                max_bytes: MAX_PAGE_BYTES
            }
        );
        req.max_bytes = u64::MAX;
        req.after_key = Some(Bytes::from_static(b"a"));
        let ask = validate_fetch(&req).expect("valid").ask;
        assert_eq!(
            ask,
            FetchAsk::Page {
                after_key: Some(Bytes::from_static(b"a")),
                max_bytes: MAX_PAGE_BYTES
            }
        );
        let mut req = fetch(SlotFetchKind::Changes);
        assert_eq!(
            validate_fetch(&req).expect("valid").ask,
            FetchAsk::Changes { since: None }
        );
        req.since = Some(12);
        assert_eq!(
            validate_fetch(&req).expect("valid").ask,
            FetchAsk::Changes { since: Some(12) }
        );
        let mut req = fetch(SlotFetchKind::Versions);
        req.max_keys = 10;
        assert_eq!(
            validate_fetch(&req).expect("valid").ask,
            FetchAsk::Versions {
                after_key: None,
                max_keys: 10
            }
        );
    }

    #[test]
    fn bad_fetches_are_invalid_arguments() {
        let mut cases = Vec::new();
        let mut r = fetch(SlotFetchKind::Page);
        r.slot = 4096;
        cases.push(r);
        let mut r = fetch(SlotFetchKind::Page);
        r.epoch = 0;
        cases.push(r);
        cases.push(fetch(SlotFetchKind::Unspecified));
        let mut r = fetch(SlotFetchKind::Page);
        r.kind = 42;
        cases.push(r);
        let mut r = fetch(SlotFetchKind::Versions);
        r.keys = vec![Bytes::from_static(b"k")];
        cases.push(r);
        let mut r = fetch(SlotFetchKind::Values);
        r.after_key = Some(Bytes::new());
        cases.push(r);
        let mut r = fetch(SlotFetchKind::Values);
        r.keys = vec![Bytes::new(); MAX_VERSION_KEYS + 1];
        cases.push(r);
        let mut r = fetch(SlotFetchKind::Changes);
        r.keys = vec![Bytes::from_static(b"k")];
        cases.push(r);
        let mut r = fetch(SlotFetchKind::Changes);
        r.after_key = Some(Bytes::new());
        cases.push(r);
        for req in cases {
            let e = validate_fetch(&req).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{req:?}");
        }
        let mut r = fetch(SlotFetchKind::Values);
        r.keys = vec![Bytes::new(); MAX_VERSION_KEYS];
        assert!(validate_fetch(&r).is_ok());
    }

    #[test]
    fn only_slot_move_commands_pass() {
        let slot = Slot::new(7).expect("slot");
        let fence = SlotCommand {
            slot,
            epoch: 2,
            step: MoveStep::Fence,
        };
        let data = Command::Slot(fence.clone()).encode();
        assert_eq!(validate_command(&data).expect("a slot command"), fence);
        let put = Command::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            expect: Expect::Any,
        }
        .encode();
        let e = validate_command(&put).expect_err("not a slot command");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = validate_command(b"\x01\xff").expect_err("garbage");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = validate_command(b"").expect_err("empty");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn command_timeouts_are_defaulted_and_capped() {
        assert_eq!(command_timeout(0), DEFAULT_COMMAND_TIMEOUT);
        assert_eq!(command_timeout(250), Duration::from_millis(250));
        assert_eq!(command_timeout(u64::MAX), MAX_COMMAND_TIMEOUT);
    }
}
