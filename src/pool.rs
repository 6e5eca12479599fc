//! An ordered worker pool: items go in numbered, results come out in the
//! same order, work happens on every core in between. Used to compress
//! records while saving and to decompress and check them while restoring.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// A pool of threads applying a function to items, delivering results in
/// submission order. The caller bounds memory by bounding
/// [`OrderedPool::in_flight`].
pub struct OrderedPool<I, O> {
    work: Option<Sender<(u64, I)>>,
    done: Receiver<(u64, O)>,
    submitted: u64,
    returned: u64,
    ready: BTreeMap<u64, O>,
    workers: Vec<JoinHandle<()>>,
}

impl<I: Send + 'static, O: Send + 'static> OrderedPool<I, O> {
    /// Starts `threads` workers (at least one), each with its own function
    /// made by `make` (so each can own state, such as a zstd context).
    pub fn new<F, M>(threads: usize, make: M) -> Self
    where
        M: Fn() -> F,
        F: FnMut(I) -> O + Send + 'static,
    {
        let (work_tx, work_rx) = channel::<(u64, I)>();
        let (done_tx, done_rx) = channel();
        let work_rx = Arc::new(Mutex::new(work_rx));
        let workers = (0..threads.max(1))
            .map(|_| {
                let rx = Arc::clone(&work_rx);
                let tx = done_tx.clone();
                let mut f = make();
                thread::spawn(move || {
                    loop {
                        // The lock is only held to take one item.
                        let item = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok((seq, item)) = item else { return };
                        if tx.send((seq, f(item))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        OrderedPool {
            work: Some(work_tx),
            done: done_rx,
            submitted: 0,
            returned: 0,
            ready: BTreeMap::new(),
            workers,
        }
    }

    /// Queues an item.
    pub fn submit(&mut self, item: I) {
        let seq = self.submitted;
        self.submitted += 1;
        self.work
            .as_ref()
            .expect("the pool is open")
            .send((seq, item))
            .expect("pool workers are alive");
    }

    /// Items submitted whose results have not been taken.
    pub fn in_flight(&self) -> u64 {
        self.submitted - self.returned
    }

    /// The next result in submission order, waiting for it; `None` when
    /// nothing is in flight.
    pub fn next_result(&mut self) -> Option<O> {
        if self.in_flight() == 0 {
            return None;
        }
        loop {
            if let Some(o) = self.ready.remove(&self.returned) {
                self.returned += 1;
                return Some(o);
            }
            let (seq, o) = self.done.recv().expect("pool workers are alive");
            self.ready.insert(seq, o);
        }
    }
}

impl<I, O> Drop for OrderedPool<I, O> {
    fn drop(&mut self) {
        self.work = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_in_order() {
        let mut pool = OrderedPool::new(4, || {
            |x: u64| {
                // Later items finish first.
                thread::sleep(std::time::Duration::from_micros((50 - x) * 100));
                x * 2
            }
        });
        for x in 0..50 {
            pool.submit(x);
        }
        let got: Vec<u64> = std::iter::from_fn(|| pool.next_result()).collect();
        assert_eq!(got, (0..50).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(pool.next_result(), None);
    }
}
