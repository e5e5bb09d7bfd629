//! keel's error convention for the client API.
//!
//! Every error a keel node returns to a client is a gRPC [`Status`] whose binary
//! metadata entry [`ERROR_METADATA_KEY`] (`keel-error-bin`) holds an encoded
//! [`ErrorDetail`]. The detail, not the gRPC code, is authoritative: it says what kind
//! of failure it was, whether the request may have been applied, and where the leader
//! is. The gRPC code is chosen by [`code_for`] so that generic gRPC tooling (and
//! clients that ignore the detail) still behave sensibly.
//!
//! Servers build statuses with the [`ErrorDetail`] constructors and
//! [`ErrorDetail::into_status`]; clients read them back with [`error_detail`].

use prost::Message as _;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

pub use crate::v1::ErrorDetail;
pub use crate::v1::error_detail::Kind;

/// The binary metadata key that carries the encoded [`ErrorDetail`].
pub const ERROR_METADATA_KEY: &str = "keel-error-bin";

/// The gRPC code a status of the given kind carries.
///
/// `OutcomeUnknown` maps to `UNKNOWN`; a server whose deadline passed may use
/// [`ErrorDetail::into_status_with_code`] with `DEADLINE_EXCEEDED` instead. Clients
/// must decide on the detail's kind, never on the code alone: several kinds share
/// `UNAVAILABLE`.
pub fn code_for(kind: Kind) -> Code {
    match kind {
        Kind::NotLeader | Kind::NoLeader | Kind::ShuttingDown | Kind::SlotMoving => {
            Code::Unavailable
        }
        Kind::Conflict | Kind::Refused | Kind::SessionExpired | Kind::WrongGroup => {
            Code::FailedPrecondition
        }
        Kind::InvalidArgument | Kind::CrossGroup => Code::InvalidArgument,
        Kind::Overloaded | Kind::DiskFull => Code::ResourceExhausted,
        Kind::OutcomeUnknown => Code::Unknown,
        Kind::Internal => Code::Internal,
        Kind::Unspecified => Code::Unknown,
    }
}

impl ErrorDetail {
    /// A detail of the given kind with a human-readable explanation.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        let mut detail = ErrorDetail {
            message: message.into(),
            ..ErrorDetail::default()
        };
        detail.set_kind(kind);
        detail
    }

    /// This node is not the leader. `leader_id` and `leader_addr` name the leader when
    /// known (0 and "" otherwise); the request was not applied.
    pub fn not_leader(leader_id: u64, leader_addr: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::NotLeader, "this node is not the leader")
            .with_leader(leader_id, leader_addr)
    }

    /// No leader is known right now; the request was not applied.
    pub fn no_leader() -> Self {
        ErrorDetail::new(Kind::NoLeader, "no leader is known (election in progress)")
    }

    /// The precondition did not hold. `current_version` is the key's version, 0 if it
    /// does not exist; nothing changed.
    pub fn conflict(current_version: u64) -> Self {
        let mut detail = ErrorDetail::new(
            Kind::Conflict,
            format!("precondition failed: current version is {current_version}"),
        );
        detail.current_version = current_version;
        detail
    }

    /// The request is malformed or over a limit; nothing changed.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::InvalidArgument, message)
    }

    /// The cluster's state forbids the request right now (the message says why);
    /// nothing changed.
    pub fn refused(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::Refused, message)
    }

    /// The node is overloaded; the request was not applied.
    pub fn overloaded(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::Overloaded, message)
    }

    /// The node's data disk is full; the write was not applied.
    pub fn disk_full(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::DiskFull, message)
    }

    /// The write was proposed but its fate is unknown; it may or may not be applied.
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::OutcomeUnknown, message)
    }

    /// The node is shutting down; the request was not applied.
    pub fn shutting_down() -> Self {
        ErrorDetail::new(Kind::ShuttingDown, "the node is shutting down")
    }

    /// The write's client session, or its sequence number's result, is no longer
    /// known: not applied now, perhaps applied by an earlier attempt.
    pub fn session_expired(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::SessionExpired, message)
    }

    /// The group does not serve `slot` as of cluster map version `map_version`
    /// (0: unknown); the request was not applied.
    pub fn wrong_group(slot: u16, map_version: u64, message: impl Into<String>) -> Self {
        let mut detail = ErrorDetail::new(Kind::WrongGroup, message);
        detail.slot = u32::from(slot);
        detail.map_version = map_version;
        detail
    }

    /// `slot` is being handed between groups; the request was not applied.
    pub fn slot_moving(slot: u16, message: impl Into<String>) -> Self {
        let mut detail = ErrorDetail::new(Kind::SlotMoving, message);
        detail.slot = u32::from(slot);
        detail
    }

    /// Marks a `WRONG_GROUP` or `SLOT_MOVING` answer as the group's own (its
    /// state machine refused, after its session lookup), not a node's reading
    /// of its cluster map.
    pub fn by_group(mut self) -> Self {
        self.by_group = true;
        self
    }

    /// The request's keys live in slots of different groups; nothing changed.
    pub fn cross_group(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::CrossGroup, message)
    }

    /// An internal error on the node (e.g. storage failure).
    pub fn internal(message: impl Into<String>) -> Self {
        ErrorDetail::new(Kind::Internal, message)
    }

    /// Names the group a key operation was routed to (field `group`), so a
    /// client learns whose leader a NOT_LEADER hint is.
    pub fn in_group(mut self, group: u64) -> Self {
        self.group = group;
        self
    }

    /// Adds the leader's id and client address (any kind may carry them).
    pub fn with_leader(mut self, leader_id: u64, leader_addr: impl Into<String>) -> Self {
        self.leader_id = leader_id;
        self.leader_addr = leader_addr.into();
        self
    }

    /// A status with the code [`code_for`] this detail's kind, the detail's message,
    /// and the detail attached.
    pub fn into_status(self) -> Status {
        let code = code_for(self.kind());
        self.into_status_with_code(code)
    }

    /// Like [`ErrorDetail::into_status`] with an explicit gRPC code, for the cases the
    /// convention leaves open (`DEADLINE_EXCEEDED` for an `OutcomeUnknown` caused by the
    /// deadline).
    pub fn into_status_with_code(self, code: Code) -> Status {
        let mut metadata = MetadataMap::new();
        metadata.insert_bin(
            ERROR_METADATA_KEY,
            MetadataValue::from_bytes(&self.encode_to_vec()),
        );
        let message = if self.message.is_empty() {
            self.kind().as_str_name().to_owned()
        } else {
            self.message
        };
        Status::with_metadata(code, message, metadata)
    }
}

impl From<ErrorDetail> for Status {
    fn from(detail: ErrorDetail) -> Self {
        detail.into_status()
    }
}

/// The [`ErrorDetail`] a status carries, if it has a well-formed one.
///
/// `None` means the status did not come from keel's error convention: it was made by
/// the gRPC stack (connection failures, timeouts, unimplemented methods) or by
/// something between the client and the node. A detail whose kind this build does not
/// know reads as [`Kind::Unspecified`] (prost's rule for unknown enum values).
pub fn error_detail(status: &Status) -> Option<ErrorDetail> {
    let value = status.metadata().get_bin(ERROR_METADATA_KEY)?;
    let bytes = value.to_bytes().ok()?;
    ErrorDetail::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client sees: the status after it went over the wire as HTTP headers.
    fn over_the_wire(status: Status) -> Status {
        let mut headers = tonic::codegen::http::HeaderMap::new();
        status.add_header(&mut headers).expect("headers encode");
        Status::from_header_map(&headers).expect("a status header was written")
    }

    #[test]
    fn every_kind_gets_its_code_and_survives_the_wire() {
        let cases = [
            (
                ErrorDetail::not_leader(2, "10.0.0.2:7000"),
                Code::Unavailable,
            ),
            (ErrorDetail::no_leader(), Code::Unavailable),
            (ErrorDetail::conflict(41), Code::FailedPrecondition),
            (
                ErrorDetail::invalid_argument("key too long"),
                Code::InvalidArgument,
            ),
            (
                ErrorDetail::overloaded("queue full"),
                Code::ResourceExhausted,
            ),
            (
                ErrorDetail::outcome_unknown("lost leadership"),
                Code::Unknown,
            ),
            (ErrorDetail::shutting_down(), Code::Unavailable),
            (ErrorDetail::internal("fsync failed"), Code::Internal),
            (
                ErrorDetail::session_expired("session expired"),
                Code::FailedPrecondition,
            ),
            (
                ErrorDetail::wrong_group(4095, 17, "slot 4095 is not served here"),
                Code::FailedPrecondition,
            ),
            (
                ErrorDetail::slot_moving(7, "slot 7 is moving"),
                Code::Unavailable,
            ),
            (
                ErrorDetail::cross_group("keys of two groups"),
                Code::InvalidArgument,
            ),
        ];
        for (detail, code) in cases {
            let status = over_the_wire(detail.clone().into_status());
            assert_eq!(status.code(), code, "{detail:?}");
            assert_eq!(status.message(), detail.message);
            assert_eq!(error_detail(&status), Some(detail));
        }
    }

    #[test]
    fn leader_hint_and_current_version_are_carried() {
        let status = over_the_wire(ErrorDetail::not_leader(3, "node3:7000").into());
        let detail = error_detail(&status).expect("detail");
        assert_eq!(detail.kind(), Kind::NotLeader);
        assert_eq!(
            (detail.leader_id, detail.leader_addr.as_str()),
            (3, "node3:7000")
        );

        let detail = error_detail(&over_the_wire(ErrorDetail::conflict(0).into())).expect("detail");
        assert_eq!((detail.kind(), detail.current_version), (Kind::Conflict, 0));
        let detail = error_detail(&over_the_wire(
            ErrorDetail::wrong_group(4095, 17, "").into(),
        ))
        .expect("detail");
        assert_eq!(
            (detail.kind(), detail.slot, detail.map_version),
            (Kind::WrongGroup, 4095, 17)
        );
    }

    #[test]
    fn code_can_be_overridden_for_deadline() {
        let status = ErrorDetail::outcome_unknown("deadline passed")
            .into_status_with_code(Code::DeadlineExceeded);
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(
            error_detail(&status).map(|d| d.kind()),
            Some(Kind::OutcomeUnknown)
        );
    }

    #[test]
    fn empty_message_falls_back_to_kind_name() {
        let status = ErrorDetail::new(Kind::Overloaded, "").into_status();
        assert_eq!(status.message(), "OVERLOADED");
    }

    #[test]
    fn statuses_without_a_valid_detail_have_none() {
        assert_eq!(
            error_detail(&Status::unavailable("connection refused")),
            None
        );

        let mut metadata = MetadataMap::new();
        metadata.insert_bin(ERROR_METADATA_KEY, MetadataValue::from_bytes(&[0xff, 0xff]));
        let garbage = Status::with_metadata(Code::Unavailable, "x", metadata);
        assert_eq!(error_detail(&garbage), None);
    }

    #[test]
    fn unknown_kind_reads_as_unspecified() {
        let detail = ErrorDetail {
            kind: 99,
            ..ErrorDetail::default()
        };
        let status = detail.into_status_with_code(Code::Unavailable);
        assert_eq!(
            error_detail(&status).map(|d| d.kind()),
            Some(Kind::Unspecified)
        );
    }
}
