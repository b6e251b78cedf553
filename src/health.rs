//! Health: what `/ready` reports, as owned latches.
//!
//! Readiness needs a group join (an assignment, possibly empty) and no open problem. A problem
//! is a [`Latch`]: whoever finds it (a record that cannot be dead-lettered, a breaker that
//! opened, a token that cannot be signed) holds the latch while the problem lasts, and dropping
//! the latch clears it. A reason therefore lives exactly as long as its cause and cannot be
//! cleared by someone else's success: a record on one route that is dead-lettered does not
//! clear another route's archive outage. Several holders of one component and scope (ten
//! records on one route waiting for the archive) show as one reason with a count.
//! [`Problem`] is a latch slot for a problem with a single owner that sets and clears it.
//!
//! Warnings (a panic that was contained) do not make the sidecar unready; they are listed in
//! every `/ready` answer so an operator sees them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Components that can make the sidecar unready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The application endpoint or queue (circuit breaker open).
    Application,
    /// The dead-letter topic producer.
    DeadLetterTopic,
    /// The dead-letter archive (S3 or directory).
    Archive,
    /// The MSK IAM token.
    Token,
    /// The brokers rejected our authentication.
    Authentication,
    /// The delivery target refuses as configured (queue missing, access denied).
    Delivery,
    /// The Kafka consumer itself (fatal client errors, shutting down).
    Consumer,
    /// A record's processing panicked.
    Panic,
    /// A source other than Kafka cannot be read (an SQS queue that does not answer).
    Source,
    /// The schema registry that records name cannot be reached: they wait, undecided.
    SchemaRegistry,
}

impl Component {
    /// The name shown in the readiness reasons.
    pub fn name(self) -> &'static str {
        match self {
            Component::Application => "application",
            Component::DeadLetterTopic => "dead-letter topic",
            Component::Archive => "archive",
            Component::Token => "token",
            Component::Authentication => "authentication",
            Component::Delivery => "delivery",
            Component::Consumer => "consumer",
            Component::Panic => "panic",
            Component::Source => "source",
            Component::SchemaRegistry => "schema registry",
        }
    }
}

/// One open problem.
#[derive(Debug)]
struct Open {
    component: Component,
    /// A route name, or empty.
    scope: String,
    reason: String,
}

#[derive(Debug, Default)]
struct State {
    /// Whether the consumer has received an assignment from its group.
    joined: bool,
    /// Whether shutdown has started.
    stopping: bool,
    /// Open problems by latch id (ids grow, so the highest is the latest).
    open: BTreeMap<u64, Open>,
    /// Warnings by component and scope.
    warnings: BTreeMap<(Component, String), String>,
}

/// Shared readiness state.
#[derive(Debug, Default)]
pub struct Health {
    /// The state behind one lock; updates are rare (state changes, not per record).
    state: Mutex<State>,
    /// Source of latch ids.
    ids: AtomicU64,
}

/// An open problem; dropping it clears it.
#[derive(Debug)]
pub struct Latch {
    health: Arc<Health>,
    id: u64,
}

impl Latch {
    /// Replaces the reason (the problem goes on, with news).
    pub fn update(&self, reason: impl Into<String>) {
        if let Some(open) = self.health.lock().open.get_mut(&self.id) {
            open.reason = reason.into();
        }
    }
}

impl Drop for Latch {
    fn drop(&mut self) {
        self.health.lock().open.remove(&self.id);
    }
}

impl Health {
    /// A fresh state: not joined, no problems.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a flag and maps of strings: still consistent after a panic elsewhere.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the consumer received an assignment.
    pub fn mark_joined(&self) {
        self.lock().joined = true;
    }

    /// Records that shutdown started: unready from now on.
    pub fn mark_stopping(&self) {
        self.lock().stopping = true;
    }

    /// Opens a problem of `component` in `scope` (a route, or empty) until the latch is dropped.
    pub fn latch(self: &Arc<Self>, component: Component, scope: &str, reason: impl Into<String>) -> Latch {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let open = Open { component, scope: scope.to_string(), reason: reason.into() };
        self.lock().open.insert(id, open);
        Latch { health: self.clone(), id }
    }

    /// Sets a warning of `component` in `scope`, replacing the previous one.
    pub fn warn(&self, component: Component, scope: &str, text: impl Into<String>) {
        self.lock().warnings.insert((component, scope.to_string()), text.into());
    }

    /// Whether `component` has an open problem in any scope.
    pub fn has_problem(&self, component: Component) -> bool {
        self.lock().open.values().any(|o| o.component == component)
    }

    /// `Ok(warnings)` when ready, else every reason (warnings last).
    pub fn readiness(&self) -> Result<Vec<String>, Vec<String>> {
        let state = self.lock();
        let label = |component: Component, scope: &str| {
            if scope.is_empty() {
                component.name().to_string()
            } else {
                format!("{} ({scope})", component.name())
            }
        };
        let mut grouped: BTreeMap<(Component, &str), (usize, &str)> = BTreeMap::new();
        for open in state.open.values() {
            let entry = grouped.entry((open.component, open.scope.as_str())).or_insert((0, ""));
            entry.0 += 1;
            entry.1 = &open.reason; // ids ascend: the last one is the latest
        }
        let mut reasons = Vec::new();
        if state.stopping {
            reasons.push("consumer: shutting down".to_string());
        } else if !state.joined {
            reasons.push("consumer: waiting for a partition assignment from the group".to_string());
        }
        reasons.extend(grouped.iter().map(|((component, scope), (count, reason))| {
            let holders = if *count > 1 { format!(" ({count} records)") } else { String::new() };
            format!("{}: {reason}{holders}", label(*component, scope))
        }));
        let warnings: Vec<String> =
            state.warnings.iter().map(|((c, scope), text)| format!("{}: {text}", label(*c, scope))).collect();
        if reasons.is_empty() {
            Ok(warnings)
        } else {
            reasons.extend(warnings);
            Err(reasons)
        }
    }
}

/// A problem with one owner, who sets and clears it: a latch slot.
#[derive(Debug)]
pub struct Problem {
    health: Arc<Health>,
    component: Component,
    scope: String,
    latch: Mutex<Option<Latch>>,
    /// Whether the latch is set, read without the lock (clearing is on hot paths).
    open: std::sync::atomic::AtomicBool,
}

impl Problem {
    /// A cleared problem of `component` in `scope`.
    pub fn new(health: &Arc<Health>, component: Component, scope: &str) -> Self {
        Problem {
            health: health.clone(),
            component,
            scope: scope.to_string(),
            latch: Mutex::new(None),
            open: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Latch>> {
        self.latch.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens (or updates) the problem. Returns true if it was not open before.
    pub fn set(&self, reason: impl Into<String>) -> bool {
        let mut slot = self.slot();
        match slot.as_ref() {
            Some(latch) => {
                latch.update(reason);
                false
            }
            None => {
                *slot = Some(self.health.latch(self.component, &self.scope, reason));
                self.open.store(true, Ordering::Release);
                true
            }
        }
    }

    /// Clears the problem. Returns true if it was open. Cheap when it is not.
    pub fn clear(&self) -> bool {
        if !self.open.load(Ordering::Acquire) {
            return false;
        }
        let mut slot = self.slot();
        self.open.store(false, Ordering::Release);
        slot.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_joined_and_without_problems() {
        let health = Arc::new(Health::new());
        assert_eq!(health.readiness().unwrap_err().len(), 1);
        health.mark_joined();
        assert_eq!(health.readiness(), Ok(vec![]));
        let archive = Problem::new(&health, Component::Archive, "");
        assert!(archive.set("bucket missing"));
        assert!(!archive.set("bucket still missing"));
        assert_eq!(health.readiness().unwrap_err(), vec!["archive: bucket still missing".to_string()]);
        assert!(archive.clear());
        assert!(!archive.clear());
        assert!(health.readiness().is_ok());
    }

    #[test]
    fn a_problem_lasts_as_long_as_its_holders_and_is_scoped() {
        let health = Arc::new(Health::new());
        health.mark_joined();
        let a = health.latch(Component::Archive, "routes[0]", "S3 down");
        let b = health.latch(Component::Archive, "routes[0]", "S3 still down");
        let other = health.latch(Component::DeadLetterTopic, "routes[1]", "topic missing");
        assert_eq!(
            health.readiness().unwrap_err(),
            vec![
                "dead-letter topic (routes[1]): topic missing".to_string(),
                "archive (routes[0]): S3 still down (2 records)".to_string(),
            ]
        );
        drop(other); // one route recovering says nothing about the other
        drop(a);
        assert_eq!(health.readiness().unwrap_err(), vec!["archive (routes[0]): S3 still down".to_string()]);
        drop(b);
        assert!(health.readiness().is_ok());
    }

    #[test]
    fn warnings_show_without_making_the_sidecar_unready() {
        let health = Arc::new(Health::new());
        health.mark_joined();
        health.warn(Component::Panic, "", "1 record panicked");
        assert_eq!(health.readiness(), Ok(vec!["panic: 1 record panicked".to_string()]));
    }
}
