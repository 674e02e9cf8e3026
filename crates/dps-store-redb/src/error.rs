//! What can go wrong inside this backend, and how it maps onto the portable
//! [`StoreError`](dps_store::StoreError) kinds.
//!
//! Callers only ever see `StoreError`. The causes this crate detects itself are an [`Error`] in
//! the error's `source()` (downcast it to tell them apart); redb's own errors are boxed there as
//! they come.

use dps_store::StoreError;

/// A failure this backend detects itself, found as the `source()` of a
/// [`StoreError::Backend`] or [`StoreError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file was written by a newer version of this crate (its format version is higher
    /// than the one this build understands). Upgrade the binary; the file was not modified.
    #[error("database format version {found} is newer than the supported version {supported}")]
    NewerFormat {
        /// The version recorded in the file.
        found: u64,
        /// The newest version this build reads and writes.
        supported: u64,
    },
    /// A stored record (or an index entry) could not be decoded.
    #[error("corrupt {table} record {key:?}")]
    Corrupt {
        /// The table holding it.
        table: &'static str,
        /// Its key within the scope.
        key: String,
        /// The decoding failure, if there was one (none: a dangling index entry).
        #[source]
        source: Option<serde_json::Error>,
    },
    /// A record could not be encoded (it holds something JSON cannot represent).
    #[error("record cannot be encoded")]
    Encode(#[source] serde_json::Error),
    /// The writer thread is gone (the store is shutting down, or the thread panicked).
    #[error("writer thread stopped")]
    WriterStopped,
}

/// Maps any redb error: I/O trouble, a lock held by another process or a closed database are
/// `Unavailable` (retrying, or restarting the process, may help); anything else is `Backend`.
pub(crate) fn db(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Io(_)
        | redb::Error::PreviousIo
        | redb::Error::DatabaseAlreadyOpen
        | redb::Error::DatabaseClosed => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::Backend(Box::new(e)),
    }
}

pub(crate) fn corrupt(table: &'static str, key: &str, source: serde_json::Error) -> StoreError {
    StoreError::Backend(Box::new(Error::Corrupt {
        table,
        key: key.to_owned(),
        source: Some(source),
    }))
}

pub(crate) fn dangling(table: &'static str, key: &str) -> StoreError {
    StoreError::Backend(Box::new(Error::Corrupt {
        table,
        key: key.to_owned(),
        source: None,
    }))
}

pub(crate) fn encode(e: serde_json::Error) -> StoreError {
    StoreError::Backend(Box::new(Error::Encode(e)))
}

pub(crate) fn writer_stopped() -> StoreError {
    StoreError::Unavailable(Box::new(Error::WriterStopped))
}
