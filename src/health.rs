//! Health: what `/ready` reports, written by the parts that know and read by the admin server.
//!
//! Readiness needs a group join (an assignment, possibly empty) and no open problem. Each
//! component owns one problem slot ("application", "dead-letter topic", "archive", "token") and
//! sets or clears it; the reasons are what an operator reads in the 503 body.

use std::collections::BTreeMap;
use std::sync::Mutex;

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
    /// The Kafka consumer itself (fatal client errors).
    Consumer,
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
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Whether the consumer has received an assignment from its group.
    joined: bool,
    /// Open problems by component and scope (a route name, or empty).
    problems: BTreeMap<(Component, String), String>,
}

/// Shared readiness state.
#[derive(Debug, Default)]
pub struct Health {
    /// The state behind one lock; updates are rare (state changes, not per record).
    state: Mutex<State>,
}

impl Health {
    /// A fresh state: not joined, no problems.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a flag and a map of strings: still consistent after a panic elsewhere.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the consumer received an assignment.
    pub fn mark_joined(&self) {
        self.lock().joined = true;
    }

    /// Opens (or updates) the problem of `component`. Returns true if it was not open before.
    pub fn set_problem(&self, component: Component, reason: impl Into<String>) -> bool {
        self.set_scoped(component, "", reason)
    }

    /// Clears the problem of `component`. Returns true if one was open.
    pub fn clear_problem(&self, component: Component) -> bool {
        self.clear_scoped(component, "")
    }

    /// Opens the problem of `component` for `scope` (a route). Returns true if it is new.
    pub fn set_scoped(&self, component: Component, scope: &str, reason: impl Into<String>) -> bool {
        self.lock().problems.insert((component, scope.to_string()), reason.into()).is_none()
    }

    /// Clears the problem of `component` for `scope`. Returns true if one was open.
    pub fn clear_scoped(&self, component: Component, scope: &str) -> bool {
        let mut state = self.lock();
        if state.problems.is_empty() {
            return false;
        }
        state.problems.remove(&(component, scope.to_string())).is_some()
    }

    /// Whether `component` has an open problem in any scope.
    pub fn has_problem(&self, component: Component) -> bool {
        self.lock().problems.keys().any(|(c, _)| *c == component)
    }

    /// `Ok` when ready, else every reason.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let state = self.lock();
        let mut reasons = Vec::new();
        if !state.joined {
            reasons.push("consumer: waiting for a partition assignment from the group".to_string());
        }
        reasons.extend(state.problems.iter().map(|((c, scope), reason)| {
            if scope.is_empty() {
                format!("{}: {reason}", c.name())
            } else {
                format!("{} ({scope}): {reason}", c.name())
            }
        }));
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_joined_and_without_problems() {
        let health = Health::new();
        assert_eq!(health.readiness().unwrap_err().len(), 1);
        health.mark_joined();
        assert!(health.readiness().is_ok());
        assert!(health.set_problem(Component::Archive, "bucket missing"));
        assert!(!health.set_problem(Component::Archive, "bucket still missing"));
        assert_eq!(health.readiness().unwrap_err(), vec!["archive: bucket still missing".to_string()]);
        assert!(health.clear_problem(Component::Archive));
        assert!(!health.clear_problem(Component::Archive));
        assert!(health.readiness().is_ok());
    }
}
