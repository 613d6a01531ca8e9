//! The two bounded queues between a connection's handles and its driver.
//!
//! A tokio `mpsc` channel allocates, when it is created, its first block of 32 slots and a
//! channel structure padded to cache lines: about 2.2 KiB for a queue of commands and 2.1 KiB
//! for a queue of received messages, 4.4 KiB per connection before anything is sent — more
//! than a quarter of an idle SSE stream's memory. A [`Queue`] allocates nothing until a message
//! waits in it and then holds no more slots than the deepest backlog it has seen (at most its
//! capacity), and both queues live inside the connection's one shared allocation.
//!
//! A queue is a `VecDeque` under a `std` mutex, held only for a push or a pop (never across an
//! await). One receiver; any number of senders (the handles are cloneable). A sender that
//! finds the queue full registers its waker; every pop wakes the waiting senders, and each one
//! checks again (no fairness between senders: a connection has one or a few). The receiver
//! consumes tokio's cooperative budget per message, as tokio's channels do.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError<T> {
    /// No room now; the item is handed back.
    Full(T),
    /// The receiver is gone; the item is handed back.
    Closed(T),
}

/// The receiver is gone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

/// A bounded multi-producer, single-consumer queue that allocates on demand.
pub(crate) struct Queue<T> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// Room promised by [`Queue::poll_reserve`] and not yet used.
    reserved: usize,
    /// Live senders; at zero the receiver sees the end once the queue is empty.
    senders: usize,
    receiver_alive: bool,
    receiver: Option<Waker>,
    /// Senders waiting for room or for the receiver to go, by id.
    waiting: Vec<(u64, Waker)>,
    next_id: u64,
}

impl<T> Inner<T> {
    fn has_room(&self) -> bool {
        self.items.len() + self.reserved < self.capacity
    }

    /// Registers (or refreshes) the waker of the waiter `id`, giving it an id first.
    fn wait(&mut self, id: &mut Option<u64>, waker: &Waker) {
        if let Some(id) = *id
            && let Some((_, w)) = self.waiting.iter_mut().find(|(i, _)| *i == id)
        {
            if !w.will_wake(waker) {
                w.clone_from(waker);
            }
            return;
        }
        let new = self.next_id;
        self.next_id += 1;
        *id = Some(new);
        self.waiting.push((new, waker.clone()));
    }

    fn forget(&mut self, id: &mut Option<u64>) {
        if let Some(id) = id.take() {
            self.waiting.retain(|(i, _)| *i != id);
        }
    }

    /// Pushes and hands back the receiver's waker, to wake once the lock is released.
    fn push(&mut self, item: T) -> Option<Waker> {
        self.items.push_back(item);
        self.receiver.take()
    }
}

/// Wakes what a locked operation collected, after the lock is gone.
fn wake_all(waiting: Vec<(u64, Waker)>) {
    for (_, waker) in waiting {
        waker.wake();
    }
}

impl<T> Queue<T> {
    /// A queue with room for `capacity` items (at least one), one sender and a receiver.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                capacity: capacity.max(1),
                reserved: 0,
                senders: 1,
                receiver_alive: true,
                receiver: None,
                waiting: Vec::new(),
                next_id: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes if there is room now.
    pub(crate) fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        let mut inner = self.lock();
        if !inner.receiver_alive {
            return Err(PushError::Closed(item));
        }
        if !inner.has_room() {
            return Err(PushError::Full(item));
        }
        let wake = inner.push(item);
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
        Ok(())
    }

    /// Pushes `item` (taking it out of the option) once there is room. `waiter` identifies the
    /// caller's registration while it waits; pass it to [`forget`](Self::forget) if the caller
    /// stops waiting. `Ready(Err)` leaves the item where it was.
    pub(crate) fn poll_push(
        &self,
        cx: &mut Context<'_>,
        item: &mut Option<T>,
        waiter: &mut Option<u64>,
    ) -> Poll<Result<(), Closed>> {
        let mut inner = match self.poll_room(cx, waiter) {
            Poll::Ready(Ok(inner)) => inner,
            Poll::Ready(Err(Closed)) => return Poll::Ready(Err(Closed)),
            Poll::Pending => return Poll::Pending,
        };
        let wake = item.take().and_then(|item| inner.push(item));
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }

    /// Reserves room for one item, to be used by [`push_reserved`](Self::push_reserved) or
    /// given back by [`release`](Self::release).
    pub(crate) fn poll_reserve(
        &self,
        cx: &mut Context<'_>,
        waiter: &mut Option<u64>,
    ) -> Poll<Result<(), Closed>> {
        self.poll_room(cx, waiter)
            .map_ok(|mut inner| inner.reserved += 1)
    }

    /// The locked queue once it has room for one item (the caller's registration dropped), or
    /// `Closed`; registers `waiter` while it is full.
    fn poll_room(
        &self,
        cx: &mut Context<'_>,
        waiter: &mut Option<u64>,
    ) -> Poll<Result<MutexGuard<'_, Inner<T>>, Closed>> {
        let mut inner = self.lock();
        if !inner.receiver_alive {
            inner.forget(waiter);
            return Poll::Ready(Err(Closed));
        }
        if !inner.has_room() {
            inner.wait(waiter, cx.waker());
            return Poll::Pending;
        }
        inner.forget(waiter);
        Poll::Ready(Ok(inner))
    }

    /// Pushes into room reserved before. The item comes back if the receiver is gone (the
    /// reservation is used up either way).
    pub(crate) fn push_reserved(&self, item: T) -> Result<(), T> {
        let mut inner = self.lock();
        inner.reserved = inner.reserved.saturating_sub(1);
        if !inner.receiver_alive {
            return Err(item);
        }
        let wake = inner.push(item);
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
        Ok(())
    }

    /// Gives back room reserved and not used.
    pub(crate) fn release(&self) {
        let mut inner = self.lock();
        inner.reserved = inner.reserved.saturating_sub(1);
        let waiting = std::mem::take(&mut inner.waiting);
        drop(inner);
        wake_all(waiting);
    }

    /// Drops the registration of a sender that stopped waiting.
    pub(crate) fn forget(&self, waiter: &mut Option<u64>) {
        if waiter.is_some() {
            self.lock().forget(waiter);
        }
    }

    /// Room left now.
    pub(crate) fn room(&self) -> usize {
        let inner = self.lock();
        inner
            .capacity
            .saturating_sub(inner.items.len() + inner.reserved)
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        !self.lock().receiver_alive
    }

    /// `Ready` once the receiver is gone.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>, waiter: &mut Option<u64>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.receiver_alive {
            inner.wait(waiter, cx.waker());
            Poll::Pending
        } else {
            inner.forget(waiter);
            Poll::Ready(())
        }
    }

    /// One more sender.
    pub(crate) fn add_sender(&self) {
        self.lock().senders += 1;
    }

    /// One sender fewer; the last one wakes the receiver to see the end.
    pub(crate) fn drop_sender(&self) {
        let mut inner = self.lock();
        inner.senders = inner.senders.saturating_sub(1);
        let wake = if inner.senders == 0 {
            inner.receiver.take()
        } else {
            None
        };
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Takes the next item: `Ready(None)` once every sender is gone and the queue is empty.
    /// Consumes a unit of tokio's cooperative budget per item, so a task that keeps receiving
    /// still yields to its neighbours.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut inner = self.lock();
        if let Some(item) = inner.items.pop_front() {
            let waiting = std::mem::take(&mut inner.waiting);
            drop(inner);
            coop.made_progress();
            wake_all(waiting);
            return Poll::Ready(Some(item));
        }
        if inner.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut inner.receiver {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes the next item if one is queued, without waiting or registering.
    pub(crate) fn try_pop(&self) -> Option<T> {
        let mut inner = self.lock();
        let item = inner.items.pop_front()?;
        let waiting = std::mem::take(&mut inner.waiting);
        drop(inner);
        wake_all(waiting);
        Some(item)
    }

    /// The receiver is gone: queued items are dropped, waiting senders woken (their pushes
    /// fail from now on).
    pub(crate) fn close_receiver(&self) {
        let mut inner = self.lock();
        inner.receiver_alive = false;
        inner.receiver = None;
        let items = std::mem::take(&mut inner.items);
        let waiting = std::mem::take(&mut inner.waiting);
        drop(inner);
        drop(items);
        wake_all(waiting);
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Queue")
            .field("len", &inner.items.len())
            .field("capacity", &inner.capacity)
            .field("senders", &inner.senders)
            .field("receiver_alive", &inner.receiver_alive)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn allocates_nothing_until_used_and_no_more_than_the_backlog() {
        let q = Queue::new(16);
        assert_eq!(q.lock().items.capacity(), 0);
        for i in 0..3 {
            q.try_push(i).unwrap();
        }
        assert!(q.lock().items.capacity() < 16);
        assert_eq!(q.room(), 13);
    }

    #[test]
    fn full_hands_back_and_a_pop_wakes_the_waiting_sender() {
        let q = Queue::new(1);
        q.try_push(1).unwrap();
        assert_eq!(q.try_push(2), Err(PushError::Full(2)));
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        let (mut item, mut id) = (Some(2), None);
        assert!(q.poll_push(&mut cx, &mut item, &mut id).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert_eq!(q.try_pop(), Some(1));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            q.poll_push(&mut cx, &mut item, &mut id),
            Poll::Ready(Ok(()))
        );
        assert_eq!(item, None);
        assert!(q.lock().waiting.is_empty());
        assert_eq!(q.try_pop(), Some(2));
    }

    #[test]
    fn a_sender_that_stops_waiting_leaves_nothing_behind() {
        let q = Queue::new(1);
        q.try_push(0).unwrap();
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        for _ in 0..100 {
            let (mut item, mut id) = (Some(1), None);
            assert!(q.poll_push(&mut cx, &mut item, &mut id).is_pending());
            // Polled again while waiting: the registration is refreshed, not added.
            assert!(q.poll_push(&mut cx, &mut item, &mut id).is_pending());
            q.forget(&mut id);
        }
        assert!(q.lock().waiting.is_empty());
    }

    #[test]
    fn reservations_count_against_the_room() {
        let q = Queue::new(2);
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut id = None;
        assert_eq!(q.poll_reserve(&mut cx, &mut id), Poll::Ready(Ok(())));
        q.try_push(1).unwrap();
        assert_eq!(q.try_push(2), Err(PushError::Full(2)));
        assert!(q.poll_reserve(&mut cx, &mut id).is_pending());
        q.forget(&mut id);
        q.push_reserved(3).unwrap();
        assert_eq!(q.try_pop(), Some(1));
        assert_eq!(q.poll_reserve(&mut cx, &mut id), Poll::Ready(Ok(())));
        q.release();
        assert_eq!(q.room(), 1);
    }

    #[test]
    fn the_end_of_either_side_is_seen_by_the_other() {
        let q = Queue::new(4);
        q.try_push(1).unwrap();
        q.add_sender();
        q.drop_sender();
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(Some(1)));
        assert!(q.poll_pop(&mut cx).is_pending());
        q.drop_sender();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(None));

        let q = Queue::new(1);
        q.try_push(1).unwrap();
        let (mut item, mut id) = (Some(2), None);
        assert!(q.poll_push(&mut cx, &mut item, &mut id).is_pending());
        let mut closed = None;
        assert!(q.poll_closed(&mut cx, &mut closed).is_pending());
        let before = count.0.load(Ordering::SeqCst);
        q.close_receiver();
        assert_eq!(count.0.load(Ordering::SeqCst), before + 2);
        assert_eq!(
            q.poll_push(&mut cx, &mut item, &mut id),
            Poll::Ready(Err(Closed))
        );
        assert_eq!(item, Some(2));
        assert_eq!(q.poll_closed(&mut cx, &mut closed), Poll::Ready(()));
        assert_eq!(q.try_push(3), Err(PushError::Closed(3)));
        assert!(q.is_closed());
        assert_eq!(q.lock().items.len(), 0);
    }

    #[tokio::test]
    async fn a_receiving_task_yields_to_its_neighbours() {
        // With a queue that never runs dry, the receiver must still yield now and then
        // (tokio's budget), or a task spawned on the same thread would never run.
        let q = Arc::new(Queue::new(1));
        let flag = Arc::new(AtomicUsize::new(0));
        let seen = flag.clone();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                tokio::task::spawn_local(async move { seen.store(1, Ordering::SeqCst) });
                for i in 0..10_000 {
                    let _ = q.try_push(i);
                    let got = poll_fn(|cx| q.poll_pop(cx)).await;
                    assert_eq!(got, Some(i));
                    if flag.load(Ordering::SeqCst) == 1 {
                        return;
                    }
                }
                panic!("the neighbour never ran");
            })
            .await;
    }
}
