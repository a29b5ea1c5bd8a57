//! Panics contained: a bug that one instance runs into stays with that instance.
//!
//! The pure core reports every failure it foresees as a rejection or an incident.
//! A panic is one it did not foresee (a bug in nagare, in an expression helper, in
//! a connector's code). These helpers turn it into a value at the engine's edges:
//! [`crate::Engine`] makes a panicking step an incident on the token the event was
//! for (on the instance as stored before the event), and the executor makes a
//! panicking connector call a fatal failure of its job. Nothing unwinds through a
//! lock, a request or the executor loop.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Longest panic message kept in an incident or an error.
const MAX_MESSAGE_CHARS: usize = 500;

/// Run `f`; a panic becomes `Err` with its message.
///
/// `AssertUnwindSafe` is sound here because callers discard whatever `f` was
/// changing when it panicked (the instance is re-read from the store).
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

/// The text a panic was raised with, shortened.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        text
    } else {
        format!("{}…", text.chars().take(MAX_MESSAGE_CHARS).collect::<String>())
    }
}

/// A boxed future whose panics come out as `Err(message)`. It is not polled again
/// after a panic.
pub(crate) struct CatchUnwind<'a, T>(pub Pin<Box<dyn Future<Output = T> + Send + 'a>>);

impl<T> Future for CatchUnwind<'_, T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch(|| self.0.as_mut().poll(cx)) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(message) => Poll::Ready(Err(message)),
        }
    }
}

/// Tests provoke a panic inside the next step taken on their thread; nothing a
/// user can reach (the hook exists in the engine's own unit tests only).
#[cfg(test)]
pub(crate) mod provoke {
    use std::cell::Cell;

    thread_local! {
        static NEXT_STEP: Cell<bool> = const { Cell::new(false) };
        static NEXT_START: Cell<bool> = const { Cell::new(false) };
    }

    /// The next `runtime::step` on this thread panics.
    pub(crate) fn panic_in_next_step() {
        NEXT_STEP.with(|c| c.set(true));
    }

    /// The next `runtime::start` on this thread panics.
    pub(crate) fn panic_in_next_start() {
        NEXT_START.with(|c| c.set(true));
    }

    pub(crate) fn maybe_panic_in_step() {
        if NEXT_STEP.with(|c| c.replace(false)) {
            panic!("provoked by a test: index out of bounds");
        }
    }

    pub(crate) fn maybe_panic_in_start() {
        if NEXT_START.with(|c| c.replace(false)) {
            panic!("provoked by a test: index out of bounds");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_gives_the_message_of_str_and_string_panics() {
        assert_eq!(catch(|| panic!("plain")).unwrap_err(), "plain");
        let n = 7;
        assert_eq!(catch(|| panic!("formatted {n}")).unwrap_err(), "formatted 7");
        assert_eq!(catch(|| 5).unwrap(), 5);
    }

    #[test]
    fn long_panic_messages_are_cut() {
        let long = "x".repeat(10_000);
        let m = catch(|| panic!("{long}")).unwrap_err();
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[tokio::test]
    async fn a_future_that_panics_when_polled_gives_err() {
        let f: Pin<Box<dyn Future<Output = u8> + Send>> = Box::pin(async {
            tokio::task::yield_now().await;
            panic!("in the future")
        });
        assert_eq!(CatchUnwind(f).await, Err("in the future".to_string()));
        let ok: Pin<Box<dyn Future<Output = u8> + Send>> = Box::pin(async { 3 });
        assert_eq!(CatchUnwind(ok).await, Ok(3));
    }
}
