//! A shutdown signal an executor's tasks can all wait on, fired once from the main thread.

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};

/// Cloneable view of one executor's shutdown signal. Invariant: once fired it stays fired.
#[derive(Clone)]
pub struct Shutdown {
    rx: Shared<oneshot::Receiver<()>>,
}

impl Shutdown {
    /// A signal fired by sending on (or dropping) the returned sender.
    pub fn new() -> (oneshot::Sender<()>, Shutdown) {
        let (tx, rx) = oneshot::channel();
        (tx, Shutdown { rx: rx.shared() })
    }

    /// Resolves once shutdown has been asked for.
    pub async fn wait(&self) {
        let _ = self.rx.clone().await;
    }

    pub fn is_fired(&self) -> bool {
        self.rx.peek().is_some()
    }
}
