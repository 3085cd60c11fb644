//! Limits on what callers may take (DESIGN.md, "Security"): calls at once in all, a
//! deadline per call, and an idle timeout on uploads. Uploads at once and bytes being
//! sorted are limited where they are spent (flight's DoPut, the engine's stage budget);
//! calls per connection and message sizes by the transport.
//!
//! ```text
//! call ─► a slot of --max-calls (none free: RESOURCE_EXHAUSTED)
//!      ─► request body: no message for --idle-timeout-secs while the server waits for
//!         one: DEADLINE_EXCEEDED
//!      ─► response (head and body) within --call-timeout-secs: DEADLINE_EXCEEDED
//!      ─► the slot is freed when the response body ends or is dropped
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::Status;

/// The limits of [`LimitLayer`].
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Calls being served at once, all connections together.
    pub max_calls: usize,
    /// Longest a call may take, response stream included.
    pub call_timeout: Duration,
    /// Longest an upload may send nothing while the server waits for it.
    pub idle_timeout: Duration,
}

/// A tower layer that applies [`CallLimits`].
#[derive(Debug, Clone)]
pub struct LimitLayer {
    limits: CallLimits,
    slots: Arc<Semaphore>,
}

impl LimitLayer {
    /// Apply `limits`.
    pub fn new(limits: CallLimits) -> Self {
        Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_calls.max(1))),
        }
    }
}

impl<S> tower_layer::Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limit {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`LimitLayer`].
#[derive(Debug, Clone)]
pub struct Limit<S> {
    inner: S,
    layer: LimitLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Limit<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let CallLimits {
            max_calls,
            call_timeout,
            idle_timeout,
        } = self.layer.limits;
        let Ok(slot) = Arc::clone(&self.layer.slots).try_acquire_owned() else {
            tracing::info!(
                path = req.uri().path(),
                max_calls,
                "call refused: too many calls at once"
            );
            let status = Status::resource_exhausted(format!(
                "the server is serving its limit of {max_calls} calls at once (--max-calls): \
                 retry later"
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let deadline = Instant::now() + call_timeout;
        let req = req.map(|body| Body::new(Guarded::new(body, None, Some(idle_timeout), None)));
        let call = self.inner.call(req);
        Box::pin(async move {
            let timed_out = || {
                Status::deadline_exceeded(format!(
                    "the call took longer than {} s (--call-timeout-secs)",
                    call_timeout.as_secs()
                ))
            };
            match tokio::time::timeout_at(deadline, call).await {
                Ok(response) => Ok(response?
                    .map(|body| Body::new(Guarded::new(body, Some(deadline), None, Some(slot))))),
                Err(_) => Ok(timed_out().into_http()),
            }
        })
    }
}

/// A body under a deadline and an idle timeout, holding its call's slot until it ends.
struct Guarded {
    body: Body,
    /// The end of the call: past it, the body ends with `DEADLINE_EXCEEDED`.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How long the body may stay pending (the peer sends nothing) while polled.
    idle: Option<Duration>,
    /// Armed while the body is pending.
    idle_timer: Option<Pin<Box<Sleep>>>,
    _slot: Option<OwnedSemaphorePermit>,
    done: bool,
}

impl Guarded {
    fn new(
        body: Body,
        deadline: Option<Instant>,
        idle: Option<Duration>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            body,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            idle,
            idle_timer: None,
            _slot: slot,
            done: false,
        }
    }

    /// End the body with `status`: trailers on a response, an error on a request.
    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.done = true;
        tracing::info!(code = ?status.code(), reason = status.message(), "call cut");
        if self.idle.is_some() {
            return Poll::Ready(Some(Err(status)));
        }
        // A response ends with the status in its trailers (as tonic would end it).
        let mut trailers = status.into_http::<()>().into_parts().0.headers;
        trailers.remove(http::header::CONTENT_TYPE);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle_timer = None;
                if frame.is_none() {
                    this.done = true;
                }
                return Poll::Ready(frame);
            }
            Poll::Pending => {}
        }
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return this.fail(Status::deadline_exceeded(
                    "the call ran past its deadline (--call-timeout-secs)",
                ));
            }
        }
        if let Some(idle) = this.idle {
            let timer = this
                .idle_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
            if timer.as_mut().poll(cx).is_ready() {
                return this.fail(Status::deadline_exceeded(format!(
                    "the upload sent nothing for {} s (--idle-timeout-secs)",
                    idle.as_secs()
                )));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
