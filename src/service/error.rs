//! The one mapping from internal errors to gRPC status codes.

use tonic::{Code, Status};

use crate::pipeline::PipelineError;
use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A required field is missing or malformed.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The audio could not be decoded or analysed.
    #[error("audio #{index}: {source}")]
    Audio {
        /// Zero-based position of the audio in the request.
        index: usize,
        /// What went wrong.
        source: PipelineError,
    },
    /// The request is over a size or duration limit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The named watchlist does not exist in the caller's tenant.
    #[error("watchlist {0:?} not found")]
    WatchlistNotFound(String),
    /// The named speaker does not exist in the caller's tenant.
    #[error("speaker {0:?} not found")]
    SpeakerNotFound(String),
    /// The object already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is not allowed in the current state (e.g. enrolling an opted-out speaker).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server is at capacity; retry later.
    #[error("server busy: {0}")]
    Overloaded(&'static str),
    /// No or an unknown bearer token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The operation is not available (yet).
    #[error("{0} is not implemented yet")]
    Unimplemented(&'static str),
    /// The client's deadline (`grpc-timeout`) passed before the answer was ready.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A stream sent nothing for longer than the idle limit (seconds) and was closed.
    #[error("no message for {0} s: stream closed")]
    IdleStream(f64),
    /// The store failed.
    #[error("storage failure")]
    Store(#[source] StoreError),
    /// A worker task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidId { .. } => Self::InvalidArgument(e.to_string()),
            StoreError::WatchlistNotFound(id) => Self::WatchlistNotFound(id),
            StoreError::WatchlistExists(id) => {
                Self::AlreadyExists(format!("watchlist {id:?} already exists"))
            }
            StoreError::Precondition(m) => Self::FailedPrecondition(m),
            other => Self::Store(other),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let code = match &e {
            ServiceError::InvalidArgument(_) => Code::InvalidArgument,
            ServiceError::Audio { source, .. } if source.is_limit() => Code::ResourceExhausted,
            ServiceError::Audio { .. } => Code::InvalidArgument,
            ServiceError::Limit(_) => Code::ResourceExhausted,
            ServiceError::WatchlistNotFound(_) | ServiceError::SpeakerNotFound(_) => Code::NotFound,
            ServiceError::AlreadyExists(_) => Code::AlreadyExists,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::Overloaded(_) => Code::Unavailable,
            ServiceError::Unauthenticated(_) => Code::Unauthenticated,
            ServiceError::Unimplemented(_) => Code::Unimplemented,
            ServiceError::DeadlineExceeded | ServiceError::IdleStream(_) => Code::DeadlineExceeded,
            ServiceError::Store(_) | ServiceError::Internal(_) => Code::Internal,
        };
        if code == Code::Internal {
            // Details go to the log, not to the client.
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "request failed");
            return Status::new(code, "internal error");
        }
        Status::new(code, e.to_string())
    }
}
