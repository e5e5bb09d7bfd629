//! Cluster operations: status and membership.

use keel_proto::v1::{self, MembersResponse, StatusResponse};

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
                |channel, budget| {
                    let mut cluster = self.cluster(channel);
                    let request = request(v1::StatusRequest {}, budget);
                    async move { cluster.status(request).await }
                },
            )
            .await?
            .into_inner())
    }

    /// Hands leadership to voter `to` (0: the most caught-up active voter) and
    /// returns the node that leads afterwards. Sent to the leader, wherever it is.
    pub async fn transfer_leader(&self, to: u64) -> Result<u64, Error> {
        Ok(self
            .caller
            .call(self.deadline, Op::Read, Route::Leader, |channel, budget| {
                let mut cluster = self.cluster(channel);
                let request = request(v1::TransferLeaderRequest { to }, budget);
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
            .call(self.deadline, Op::Read, Route::Leader, |channel, budget| {
                let mut cluster = self.cluster(channel);
                let request = request(v1::MembersRequest {}, budget);
                async move { cluster.members(request).await }
            })
            .await?
            .into_inner())
    }
}
