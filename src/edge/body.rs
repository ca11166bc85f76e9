//! Body wrappers for proxied bodies, neither of which buffers anything:
//! [`Counted`] counts the bytes that pass so metrics see every proxied byte,
//! and [`Scrubbed`] drops trailer fields that must not cross the edge.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Counts data-frame bytes of the inner body into `counter`.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        counter: Counter,
    }
}

impl<B> Counted<B> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: B, counter: Counter) -> Self {
        Counted { inner, counter }
    }
}

impl<B: Body<Data = Bytes>> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Passes the inner body through, removing from its trailers what
    /// [`super::headers::scrub_trailers`] removes.
    pub struct Scrubbed<B> {
        #[pin]
        inner: B,
    }
}

impl<B> Scrubbed<B> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: B) -> Self {
        Scrubbed { inner }
    }
}

impl<B: Body<Data = Bytes>> Body for Scrubbed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = self.project().inner.poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = frame.into_trailers().unwrap_or_default();
                super::headers::scrub_trailers(&mut trailers);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
