//! The status of a request larger than the gRPC message limit.
//!
//! tonic rejects such a request before any handler runs and answers
//! OUT_OF_RANGE; the gRPC specification and docs/API.md say RESOURCE_EXHAUSTED,
//! which is what clients in other languages expect. [`MessageLimit`] wraps
//! a service and rewrites exactly that answer; every other response passes
//! through untouched.

use std::task::{Context, Poll};

use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::{Code, Status};

/// What tonic's decoder says when a message is over the limit.
const TOO_LARGE: &str = "decoded message length too large";

/// A service whose over-the-limit requests are answered RESOURCE_EXHAUSTED.
#[derive(Clone, Debug)]
pub struct MessageLimit<S>(pub S);

impl<S: NamedService> NamedService for MessageLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for MessageLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let response = self.0.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            // The rejection is a trailers-only response: the status is in
            // the headers.
            if let Some(status) = Status::from_header_map(response.headers()) {
                if status.code() == Code::OutOfRange && status.message().contains(TOO_LARGE) {
                    let exhausted = Status::resource_exhausted(status.message().to_owned());
                    if exhausted.add_header(response.headers_mut()).is_err() {
                        tracing::warn!("could not rewrite an over-limit status");
                    }
                }
            }
            Ok(response)
        })
    }
}
