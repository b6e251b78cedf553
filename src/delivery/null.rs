//! The null target (`SIDECAR_DELIVERY_URL=null://`): accepts every record at once, without I/O.
//! For benchmarks of the sidecar itself (consume, dispatch, track, commit), not for production;
//! `panic_permille` makes it panic on chosen records, to test that a panic is contained.

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::{Attempt, AttemptOutcome, Delivery, Failure, FailureKind};
use crate::record::Record;

/// Accepts everything (but a chosen share, for failure benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullDelivery {
    /// Records per thousand (by offset) that fail permanently.
    pub fail_permille: u32,
    /// Records per thousand (by offset) whose delivery panics.
    pub panic_permille: u32,
}

impl NullDelivery {
    fn outcome(&self, record: &Record, _attempt: &Attempt) -> AttemptOutcome {
        let permille = record.offset.rem_euclid(1000);
        if permille < i64::from(self.panic_permille) {
            // A test hook, asked for in the configuration: the panic the lane must contain.
            #[allow(clippy::panic)]
            {
                panic!("null://?panic_permille: a panic on record offset {}", record.offset);
            }
        }
        let fails = permille < i64::from(self.fail_permille);
        if fails {
            AttemptOutcome::Failed(Failure::new(FailureKind::Permanent, "rejected by null://?fail_permille"))
        } else {
            AttemptOutcome::Delivered
        }
    }
}

impl Delivery for NullDelivery {
    fn deliver<'a>(&'a self, record: &'a Record, attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        futures::future::ready(self.outcome(record, attempt)).boxed()
    }

    fn deliver_now(&self, record: &Record, attempt: &Attempt) -> Option<AttemptOutcome> {
        Some(self.outcome(record, attempt))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn describe(&self) -> String {
        "null://".to_string()
    }
}
