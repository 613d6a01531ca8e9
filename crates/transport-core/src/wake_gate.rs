//! [`WakeGate`]: for a link's poll loop, something costly polled only after it woke the task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Lets a task poll something (a future, a connection, a watch) only when that thing has woken
/// it since its last poll, instead of on every poll of the task: the thing is polled with the
/// gate's own waker, which opens the gate and wakes the task. For sources that rarely fire
/// (a session's end, a timer) or are costly to poll for nothing (an HTTP connection), in a loop
/// woken often for other reasons. Open at first, so the first poll registers with the sources.
#[derive(Debug)]
pub struct WakeGate {
    signal: Arc<Signal>,
    waker: Waker,
}

#[derive(Debug)]
struct Signal {
    open: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.open.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Default for WakeGate {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeGate {
    /// An open gate.
    pub fn new() -> Self {
        let signal = Arc::new(Signal {
            open: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&signal));
        Self { signal, waker }
    }

    /// The task to wake when the gate opens: call before [`take_open`](Self::take_open) in
    /// each poll of the task, so that a wake-up after the check reaches this poll's waker.
    #[inline]
    pub fn register(&self, cx: &Context<'_>) {
        self.signal.task.register(cx.waker());
    }

    /// Whether the gate was opened since the last call (and closes it).
    #[inline]
    pub fn take_open(&self) -> bool {
        self.signal.open.swap(false, Ordering::AcqRel)
    }

    /// The waker to poll the gated thing with.
    #[inline]
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Registers `cx`, then runs `poll` with the gate's waker if the gate is open; `Pending`
    /// otherwise. A `Ready` leaves the gate open: what became ready is polled again next time,
    /// to wait anew.
    pub fn poll<T>(
        &self,
        cx: &Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.register(cx);
        if !self.take_open() {
            return Poll::Pending;
        }
        let ready = poll(&mut Context::from_waker(&self.waker));
        if ready.is_ready() {
            self.signal.open.store(true, Ordering::Release);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn polls_only_after_a_wake_up_and_wakes_the_task() {
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&task));
        let cx = Context::from_waker(&waker);
        let gate = WakeGate::new();
        let polls = std::cell::Cell::new(0);
        let inner: std::cell::RefCell<Option<Waker>> = std::cell::RefCell::new(None);
        let poll_inner = || {
            gate.poll(&cx, |inner_cx| {
                polls.set(polls.get() + 1);
                *inner.borrow_mut() = Some(inner_cx.waker().clone());
                Poll::<()>::Pending
            })
        };
        // Open at first: polled once, then not again until the inner waker fires.
        assert!(poll_inner().is_pending());
        assert!(poll_inner().is_pending());
        assert_eq!(polls.get(), 1);
        inner.borrow_mut().take().expect("registered").wake();
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "the task is woken");
        assert!(poll_inner().is_pending());
        assert_eq!(polls.get(), 2);
        // Closed: not polled. Once woken, a Ready leaves it open.
        assert!(gate.poll(&cx, |_| Poll::Ready(())).is_pending());
        inner.borrow_mut().take().expect("registered").wake();
        assert!(gate.poll(&cx, |_| Poll::Ready(())).is_ready());
        assert!(gate.poll(&cx, |_| Poll::Ready(())).is_ready());
    }
}
