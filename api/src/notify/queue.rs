//! A bounded queue whose producer never waits: when it is full the oldest item makes room
//! (the caller counts the drop). One consumer awaits items; closing lets it drain what is
//! left and then see the end.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// What [`DropOldest::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed<T> {
    /// Queued with room to spare.
    Queued,
    /// Queued; the oldest item was dropped to make room.
    DroppedOldest(T),
    /// The queue is closed: the item was not queued.
    Closed(T),
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct DropOldest<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    capacity: usize,
}

impl<T> DropOldest<T> {
    /// A queue holding at most `capacity` items (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        DropOldest {
            state: Mutex::new(State { items: VecDeque::with_capacity(capacity.min(1024)), closed: false }),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `item` at the back, never waiting.
    pub(crate) fn push(&self, item: T) -> Pushed<T> {
        let result = {
            let mut s = self.lock();
            if s.closed {
                return Pushed::Closed(item);
            }
            let dropped = if s.items.len() >= self.capacity { s.items.pop_front() } else { None };
            s.items.push_back(item);
            match dropped {
                Some(d) => Pushed::DroppedOldest(d),
                None => Pushed::Queued,
            }
        };
        self.ready.notify_one();
        result
    }

    /// The oldest item, waiting for one; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<T> {
        loop {
            let ready = self.ready.notified();
            {
                let mut s = self.lock();
                if let Some(item) = s.items.pop_front() {
                    return Some(item);
                }
                if s.closed {
                    return None;
                }
            }
            // A push between the check and here left a permit in `ready`: no lost wake-up.
            ready.await;
        }
    }

    /// Refuses further items; [`pop`](Self::pop) still returns those already queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Removes every queued item and returns how many there were.
    pub(crate) fn clear(&self) -> usize {
        let mut s = self.lock();
        let n = s.items.len();
        s.items.clear();
        n
    }

    /// Items queued now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drops_the_oldest_when_full_and_drains_after_close() {
        let q = DropOldest::new(2);
        assert_eq!(q.push(1), Pushed::Queued);
        assert_eq!(q.push(2), Pushed::Queued);
        assert_eq!(q.push(3), Pushed::DroppedOldest(1));
        assert_eq!(q.len(), 2);
        q.close();
        assert_eq!(q.push(4), Pushed::Closed(4));
        assert_eq!(q.pop().await, Some(2));
        assert_eq!(q.pop().await, Some(3));
        assert_eq!(q.pop().await, None);
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_push_and_on_close() {
        let q = std::sync::Arc::new(DropOldest::new(4));
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(v) = q.pop().await {
                    got.push(v);
                }
                got
            })
        };
        for i in 0..3 {
            q.push(i);
            tokio::task::yield_now().await;
        }
        q.close();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), consumer).await;
        assert_eq!(got.ok().and_then(Result::ok), Some(vec![0, 1, 2]));
    }

    #[test]
    fn clear_counts_what_it_removes() {
        let q = DropOldest::new(8);
        q.push("a");
        q.push("b");
        assert_eq!(q.clear(), 2);
        assert_eq!(q.len(), 0);
    }
}
