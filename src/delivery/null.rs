//! The null target (`SIDECAR_DELIVERY_URL=null://`): accepts every record at once, without I/O.
//! For benchmarks of the sidecar itself (consume, dispatch, track, commit), not for production.

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::{Attempt, AttemptOutcome, Delivery};
use crate::record::Record;

/// Accepts everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullDelivery;

impl Delivery for NullDelivery {
    fn deliver<'a>(&'a self, _record: &'a Record, _attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        futures::future::ready(AttemptOutcome::Delivered).boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn describe(&self) -> String {
        "null://".to_string()
    }
}
