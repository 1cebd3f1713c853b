//! Status-code fix-up for oversized messages.
//!
//! tonic refuses a message above `max_decoding_message_size` with `OUT_OF_RANGE`, but gRPC's own
//! convention (and this service's contract) for "over a limit" is `RESOURCE_EXHAUSTED`. This layer
//! rewrites that one status on the way out; every other response passes through untouched.

use std::task::{Context, Poll};

use tonic::{Code, Status};

/// The text tonic's decoder puts in front of its "message too large" status.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

/// Maps tonic's `OUT_OF_RANGE` for a too-large message to `RESOURCE_EXHAUSTED`.
pub(crate) fn too_large_to_exhausted(status: Status) -> Status {
    if status.code() == Code::OutOfRange && status.message().starts_with(TONIC_TOO_LARGE) {
        Status::resource_exhausted(format!(
            "message too large{}",
            status
                .message()
                .strip_prefix(TONIC_TOO_LARGE)
                .unwrap_or_default()
        ))
    } else {
        status
    }
}

/// Tower layer applying [`too_large_to_exhausted`] to trailers-only responses.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MessageLimitLayer;

impl<S> tower_layer::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit { inner }
    }
}

/// The service made by [`MessageLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct MessageLimit<S> {
    inner: S,
}

impl<S, Req, B> tower_service::Service<Req> for MessageLimit<S>
where
    S: tower_service::Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if let Some(status) = Status::from_header_map(resp.headers())
                && status.code() == Code::OutOfRange
            {
                let fixed = too_large_to_exhausted(status);
                if fixed.code() != Code::OutOfRange {
                    let headers = resp.headers_mut();
                    headers.remove("grpc-status");
                    headers.remove("grpc-message");
                    headers.remove("grpc-status-details-bin");
                    // Only fails on a message that cannot be a header, which ours always can.
                    let _ = fixed.add_header(headers);
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_size_status_is_rewritten() {
        let s = too_large_to_exhausted(Status::out_of_range(
            "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes",
        ));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "message too large: found 9 bytes, the limit is: 4 bytes"
        );
        let other = too_large_to_exhausted(Status::out_of_range("seek past end"));
        assert_eq!(other.code(), Code::OutOfRange);
        let ok = too_large_to_exhausted(Status::invalid_argument("x"));
        assert_eq!(ok.code(), Code::InvalidArgument);
    }
}
