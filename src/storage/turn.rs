//! Turns in call order: appends to a log must take effect in the order they were called (a
//! client's pipelined produces keep their order), but glommio's `Semaphore` wakes waiters in no
//! fixed order. A `Turnstile` hands out numbered tickets synchronously at the call and lets them
//! through one at a time, lowest first.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use futures::channel::oneshot;

/// Invariant: `serving <= next`; every ticket below `serving` has had its turn or was dropped;
/// `waiting` and `abandoned` only hold tickets in `serving..next`.
#[derive(Debug, Default)]
pub struct Turnstile {
    next: Cell<u64>,
    serving: Cell<u64>,
    waiting: RefCell<BTreeMap<u64, oneshot::Sender<()>>>,
    abandoned: RefCell<BTreeSet<u64>>,
}

/// A place in line. Dropping it ends its turn (or gives up its place if the turn had not come).
#[derive(Debug)]
pub struct Ticket<'a> {
    turnstile: &'a Turnstile,
    number: u64,
}

impl Turnstile {
    /// A ticket behind every ticket taken before (synchronous: the order is the call order).
    pub fn ticket(&self) -> Ticket<'_> {
        let number = self.next.get();
        self.next.set(number + 1);
        Ticket {
            turnstile: self,
            number,
        }
    }

    /// The ticket `number` is done or abandoned: let the next live one through.
    fn advance_past(&self, number: u64) {
        debug_assert_eq!(
            self.serving.get(),
            number,
            "only the ticket being served advances"
        );
        let mut serving = number + 1;
        let mut abandoned = self.abandoned.borrow_mut();
        while abandoned.remove(&serving) {
            serving += 1;
        }
        self.serving.set(serving);
        debug_assert!(serving <= self.next.get());
        if let Some(tx) = self.waiting.borrow_mut().remove(&serving) {
            let _ = tx.send(());
        }
    }
}

impl Ticket<'_> {
    /// Resolves when every earlier ticket is done.
    pub async fn wait_turn(&self) {
        loop {
            let rx = {
                if self.turnstile.serving.get() == self.number {
                    return;
                }
                let (tx, rx) = oneshot::channel();
                self.turnstile.waiting.borrow_mut().insert(self.number, tx);
                rx
            };
            let _ = rx.await;
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let t = self.turnstile;
        if t.serving.get() == self.number {
            t.advance_past(self.number);
        } else {
            t.waiting.borrow_mut().remove(&self.number);
            t.abandoned.borrow_mut().insert(self.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn turns_follow_ticket_order_whatever_the_poll_order() {
        let out = crate::runtime::run_local("turnstile-test", async {
            let t = Rc::new(Turnstile::default());
            let log = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for i in 0..20u32 {
                let ticket_order = {
                    let (t, log) = (t.clone(), log.clone());
                    async move {
                        let ticket = t.ticket();
                        // Later tickets may well be polled first: they still wait their turn.
                        glommio::timer::sleep(std::time::Duration::from_micros(
                            u64::from(20 - i) * 50,
                        ))
                        .await;
                        ticket.wait_turn().await;
                        log.borrow_mut().push(i);
                        glommio::yield_if_needed().await;
                    }
                };
                tasks.push(glommio::spawn_local(ticket_order));
            }
            for task in tasks {
                task.await;
            }
            let v = log.borrow().clone();
            v
        })
        .unwrap();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn dropped_tickets_are_skipped() {
        let t = Turnstile::default();
        let a = t.ticket();
        let b = t.ticket();
        let c = t.ticket();
        drop(b); // gives up its place before its turn
        drop(a); // done: c is next
        assert_eq!(t.serving.get(), 2);
        drop(c);
        assert_eq!(t.serving.get(), 3);
        assert!(t.abandoned.borrow().is_empty());
    }
}
