//! [`LiveStation`]: the calls the engine makes, as a trait.
//!
//! The engine is written against this trait, not against the HTTP [`Client`], so its decisions
//! (what to send, when an unclear answer is settled, what is journaled) are unit-tested against
//! the in-memory double in [`super::memory`], with time under the test's control. [`Client`] is
//! the production implementation.

use std::future::Future;

use chrono::TimeDelta;

use super::client::{Client, Permit, Reply, Sent};
use super::error::ApiError;
use super::model::{Channel, ListedPage, PageDigest, RecordSet};

/// The Live Station operations the engine uses.
///
/// Reads may be retried freely. The two state-changing calls take a [`Permit`] (a rate-limit
/// slot taken before the intent is journaled) and report when their request left, because a
/// request without a clear answer can still take effect for a while after that.
pub trait LiveStation: Send + Sync + 'static {
    /// One page of the channel list (`pageNo` from 1), [`ListedPage::Unchanged`] when its body
    /// has the digest `known` (the one of a page read before: see
    /// [`ChannelPage::digest`](super::model::ChannelPage::digest)).
    fn list_channels_page(
        &self,
        page_no: u32,
        page_size: u32,
        known: Option<PageDigest>,
    ) -> impl Future<Output = Result<Reply<ListedPage>, ApiError>> + Send;

    /// One channel's current state.
    fn get_channel(
        &self,
        channel_id: &str,
    ) -> impl Future<Output = Result<Reply<Channel>, ApiError>> + Send;

    /// Every record Live Station keeps for the channel.
    fn list_records(
        &self,
        channel_id: &str,
    ) -> impl Future<Output = Result<Reply<RecordSet>, ApiError>> + Send;

    /// Waits for a slot of the shared rate limit for the next state-changing call.
    fn ready(&self) -> impl Future<Output = Permit> + Send;

    /// `startRecord`, sent in the slot `permit`.
    fn start_record(
        &self,
        channel_id: &str,
        permit: Permit,
    ) -> impl Future<Output = Sent<RecordSet>> + Send;

    /// `stopRecord`, sent in the slot `permit`.
    fn stop_record(
        &self,
        channel_id: &str,
        permit: Permit,
    ) -> impl Future<Output = Sent<RecordSet>> + Send;

    /// Asks Live Station to upload records to a bucket (private access).
    fn upload(
        &self,
        bucket: &str,
        record_ids: &[i64],
    ) -> impl Future<Output = Result<Reply<serde_json::Value>, ApiError>> + Send;

    /// The gateway's clock minus ours, once an answer carried a `Date`.
    fn clock_skew(&self) -> Option<TimeDelta>;
}

impl LiveStation for Client {
    async fn list_channels_page(
        &self,
        page_no: u32,
        page_size: u32,
        known: Option<PageDigest>,
    ) -> Result<Reply<ListedPage>, ApiError> {
        Client::list_channels_page_if_changed(self, page_no, page_size, known).await
    }

    async fn get_channel(&self, channel_id: &str) -> Result<Reply<Channel>, ApiError> {
        Client::get_channel(self, channel_id).await
    }

    async fn list_records(&self, channel_id: &str) -> Result<Reply<RecordSet>, ApiError> {
        Client::list_records(self, channel_id).await
    }

    async fn ready(&self) -> Permit {
        Client::ready(self).await
    }

    async fn start_record(&self, channel_id: &str, permit: Permit) -> Sent<RecordSet> {
        self.start_record_with(channel_id, Some(permit)).await
    }

    async fn stop_record(&self, channel_id: &str, permit: Permit) -> Sent<RecordSet> {
        self.stop_record_with(channel_id, Some(permit)).await
    }

    async fn upload(
        &self,
        bucket: &str,
        record_ids: &[i64],
    ) -> Result<Reply<serde_json::Value>, ApiError> {
        Client::upload(self, bucket, record_ids, None).await
    }

    fn clock_skew(&self) -> Option<TimeDelta> {
        Client::clock_skew(self)
    }
}

/// A shared Live Station (a test keeps a handle on the double the engine uses).
impl<T: LiveStation> LiveStation for std::sync::Arc<T> {
    fn list_channels_page(
        &self,
        page_no: u32,
        page_size: u32,
        known: Option<PageDigest>,
    ) -> impl Future<Output = Result<Reply<ListedPage>, ApiError>> + Send {
        (**self).list_channels_page(page_no, page_size, known)
    }

    fn get_channel(
        &self,
        channel_id: &str,
    ) -> impl Future<Output = Result<Reply<Channel>, ApiError>> + Send {
        (**self).get_channel(channel_id)
    }

    fn list_records(
        &self,
        channel_id: &str,
    ) -> impl Future<Output = Result<Reply<RecordSet>, ApiError>> + Send {
        (**self).list_records(channel_id)
    }

    fn ready(&self) -> impl Future<Output = Permit> + Send {
        (**self).ready()
    }

    fn start_record(
        &self,
        channel_id: &str,
        permit: Permit,
    ) -> impl Future<Output = Sent<RecordSet>> + Send {
        (**self).start_record(channel_id, permit)
    }

    fn stop_record(
        &self,
        channel_id: &str,
        permit: Permit,
    ) -> impl Future<Output = Sent<RecordSet>> + Send {
        (**self).stop_record(channel_id, permit)
    }

    fn upload(
        &self,
        bucket: &str,
        record_ids: &[i64],
    ) -> impl Future<Output = Result<Reply<serde_json::Value>, ApiError>> + Send {
        (**self).upload(bucket, record_ids)
    }

    fn clock_skew(&self) -> Option<TimeDelta> {
        (**self).clock_skew()
    }
}
