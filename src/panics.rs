//! Panics: one place that logs them as structured errors and contains the ones that must not
//! stop the process.
//!
//! Two kinds are contained. A panic in one record's work (a bug of ours, triggered by that
//! record) is caught around the record by the lane that runs it, counted, and the record is
//! dead-lettered (see `crate::dispatch`). A panic inside a library that reads bytes from the
//! wire as UTF-8 without checking (rdkafka's header names and commit metadata) is caught around
//! that one read with [`quietly`]: it is expected, so it is not logged as a bug, and the caller
//! treats the value as unreadable.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};

thread_local! {
    /// Set while a [`quietly`] call runs on this thread: its panic is expected and handled.
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// Installs the process's panic hook: panics are logged once, as an error with their location,
/// unless a [`quietly`] call expects them. Called by `main`; tests keep the default hook.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info: &PanicHookInfo<'_>| {
        if EXPECTED.with(Cell::get) {
            return;
        }
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(
            location, thread, panic = %message(info.payload()),
            "A panic occurred: this is a bug in msk-sidecar, please report it."
        );
    }));
}

/// Runs `f`, turning a panic into `Err` without logging it: for library calls that panic on
/// bytes they expected to be UTF-8. Returns what `f` returned, or the panic's message.
pub fn quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let was = EXPECTED.with(|e| e.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    EXPECTED.with(|e| e.set(was));
    result.map_err(|payload| message(payload.as_ref()))
}

/// The text of a panic payload.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quietly_returns_the_value_or_the_panic_message() {
        assert_eq!(quietly(|| 7), Ok(7));
        let bytes = vec![0xff, 0xfe];
        let err = quietly(|| std::str::from_utf8(&bytes).map(str::len).expect("utf-8")).unwrap_err();
        assert!(err.contains("utf-8"), "{err}");
        assert!(!EXPECTED.with(Cell::get), "the flag is reset after the panic");
    }
}
