//! Cluster operations: status and membership.

use keel_proto::v1::{
    self, AddMemberResponse, DigestResponse, MembersResponse, PromoteMemberResponse,
    RemoveMemberResponse, StatusResponse,
};

use crate::channel::AuthChannel;
use keel_proto::v1::cluster_client::ClusterClient;

use crate::address::Address;
use crate::call::{Op, Route};
use crate::client::{Client, request};
use crate::error::Error;

impl Client {
    /// One member's view of itself and its group, from the member at `endpoint`
    /// (`host:port`; it need not be one of the configured endpoints).
    ///
    /// Only that member is asked; failures to reach it are retried until the
    /// deadline.
    pub async fn status(&self, endpoint: &str) -> Result<StatusResponse, Error> {
        let address =
            Address::parse(endpoint).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(self
            .caller
            .call(
                self.deadline,
                Op::Read,
                Route::Fixed(address),
                |conn, budget| {
                    let mut cluster = self.cluster(conn.channel);
                    let request = request(v1::StatusRequest {}, budget);
                    async move { cluster.status(request).await }
                },
            )
            .await?
            .into_inner())
    }

    /// Hands group 1's leadership to voter `to` (0: the most caught-up active
    /// voter) and returns the node that leads afterwards. Sent to the leader,
    /// wherever it is.
    pub async fn transfer_leader(&self, to: u64) -> Result<u64, Error> {
        self.transfer_group_leader(1, to).await
    }

    /// [`Client::transfer_leader`] for a data group of the cluster map. The
    /// node asked finds the group's leader (it leads the group, or asks its
    /// members), so the call goes where group 1's calls go. (The placement
    /// group's id works only when sent to its leader: the map does not list
    /// its members.)
    pub async fn transfer_group_leader(&self, group: u64, to: u64) -> Result<u64, Error> {
        Ok(self
            .caller
            .call(self.deadline, Op::Read, Route::Leader, |conn, budget| {
                let mut cluster = self.cluster(conn.channel);
                let request = request(v1::TransferLeaderRequest { to, group }, budget);
                async move { cluster.transfer_leader(request).await }
            })
            .await?
            .into_inner()
            .leader_id)
    }

    /// The cluster's members and the current leader's id (0 if none is known).
    pub async fn members(&self) -> Result<MembersResponse, Error> {
        Ok(self
            .caller
            .call(self.deadline, Op::Read, Route::Leader, |conn, budget| {
                let mut cluster = self.cluster(conn.channel);
                let request = request(v1::MembersRequest {}, budget);
                async move { cluster.members(request).await }
            })
            .await?
            .into_inner())
    }

    /// Adds member `id` at gRPC `address` as a learner; the leader promotes it to
    /// voter once it has caught up, unless `learner` is set. Idempotent: adding a
    /// member that is already in the configuration at the same address succeeds.
    ///
    /// A change whose outcome is unknown (the leader failed mid-way) is reported as
    /// [`Error::OutcomeUnknown`]; check with [`Client::members`] and retry.
    pub async fn add_member(
        &self,
        id: u64,
        address: &str,
        learner: bool,
    ) -> Result<AddMemberResponse, Error> {
        let message = v1::AddMemberRequest {
            id,
            address: address.to_string(),
            learner,
        };
        self.cluster_call(Op::Write, Route::Leader, message, |mut c, r| async move {
            c.add_member(r).await
        })
        .await
    }

    /// Removes member `id` (voter or learner). Removing the leader hands
    /// leadership to another voter first. Refused ([`Error::Refused`]) when the
    /// voters left would not include a reachable quorum, or while another change
    /// is in flight.
    pub async fn remove_member(&self, id: u64) -> Result<RemoveMemberResponse, Error> {
        let message = v1::RemoveMemberRequest { id };
        self.cluster_call(Op::Write, Route::Leader, message, |mut c, r| async move {
            c.remove_member(r).await
        })
        .await
    }

    /// Makes learner `id` a voter.
    pub async fn promote_member(&self, id: u64) -> Result<PromoteMemberResponse, Error> {
        let message = v1::PromoteMemberRequest { id };
        self.cluster_call(Op::Write, Route::Leader, message, |mut c, r| async move {
            c.promote_member(r).await
        })
        .await
    }

    /// A fingerprint of the state machine of the member at `endpoint`, to compare
    /// replicas (equal at equal applied indexes).
    pub async fn digest(&self, endpoint: &str) -> Result<DigestResponse, Error> {
        self.group_digest(endpoint, 1).await
    }

    /// [`Client::digest`] of the node's replica of `group` (a data group it
    /// hosts; refused by a node that does not host it).
    pub async fn group_digest(&self, endpoint: &str, group: u64) -> Result<DigestResponse, Error> {
        let address =
            Address::parse(endpoint).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.cluster_call(
            Op::Read,
            Route::Fixed(address),
            v1::DigestRequest { group },
            |mut c, r| async move { c.digest(r).await },
        )
        .await
    }

    /// Starts a consistent backup of the whole key space: the leader confirms its
    /// leadership, snapshots its state machine, and streams the snapshot file.
    /// Read it to the end with [`SnapshotStream::next`]; the chunks come in order,
    /// each saying where it goes in the file and the file's total length. A broken
    /// stream is an error (start over: a backup is cheap to retake).
    pub async fn snapshot_save(&self) -> Result<SnapshotStream, Error> {
        let stream = self
            .caller
            .call(self.deadline, Op::Read, Route::Leader, |conn, _budget| {
                let mut cluster = self.cluster(conn.channel);
                // No gRPC timeout: the stream lasts as long as the file takes.
                let request = tonic::Request::new(v1::SnapshotSaveRequest {});
                async move { cluster.snapshot_save(request).await }
            })
            .await?
            .into_inner();
        Ok(SnapshotStream { stream })
    }

    /// One `keel.v1.Cluster` call through the retry loop: `call` sends `message`
    /// (with the attempt's deadline) on the attempt's connection.
    pub(crate) async fn cluster_call<M, T, F, Fut>(
        &self,
        op: Op,
        route: Route,
        message: M,
        call: F,
    ) -> Result<T, Error>
    where
        M: Clone,
        F: Fn(ClusterClient<AuthChannel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        Ok(self
            .caller
            .call(self.deadline, op, route, |conn, budget| {
                call(self.cluster(conn.channel), request(message.clone(), budget))
            })
            .await?
            .into_inner())
    }
}

/// The chunks of a backup (see [`Client::snapshot_save`]).
#[derive(Debug)]
pub struct SnapshotStream {
    stream: tonic::Streaming<v1::SnapshotSaveChunk>,
}

impl SnapshotStream {
    /// The next chunk, or `None` at the end of the file.
    pub async fn next(&mut self) -> Result<Option<v1::SnapshotSaveChunk>, Error> {
        self.stream
            .message()
            .await
            .map_err(|s| Error::Internal(format!("the backup stream broke: {}", s.message())))
    }
}
