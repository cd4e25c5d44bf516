//! Where a connection stands as far as its time limits go, and the deadline that follows.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for a request's head to end: since the connection opened, or since the first
    /// byte of a later request.
    Head { since: Instant },
    /// A request is being handled.
    Handling,
    /// No request in progress; `since` is the last byte moved either way.
    Idle { since: Instant },
}

#[derive(Debug)]
pub(super) struct Phase {
    state: Mutex<State>,
    /// Told of every change of state (not of every byte), so a deadline that moved earlier or
    /// appeared is seen at once.
    changed: Notify,
}

impl Phase {
    pub fn new() -> Self {
        Phase {
            state: Mutex::new(State::Head {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: State) {
        *self.state() = state;
        self.changed.notify_one();
    }

    /// Bytes arrived from the client: on an idle connection, a new request has begun.
    pub fn read(&self) {
        let idle = matches!(*self.state(), State::Idle { .. });
        if idle {
            self.set(State::Head {
                since: Instant::now(),
            });
        }
    }

    /// Bytes went to the client: an idle connection sending a response is making progress.
    pub fn wrote(&self) {
        if let State::Idle { since } = &mut *self.state() {
            *since = Instant::now();
        }
    }

    pub fn handling(&self) {
        self.set(State::Handling);
    }

    pub fn responded(&self) {
        self.set(State::Idle {
            since: Instant::now(),
        });
    }

    fn deadline(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<Instant> {
        match *self.state() {
            State::Head { since } => Some(since + header_timeout),
            State::Handling => None,
            State::Idle { since } => Some(since + idle_timeout),
        }
    }

    /// Completes once the deadline of the current state has passed.
    pub async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) {
        loop {
            // Created before the state is read: a change in between leaves a permit.
            let changed = self.changed.notified();
            match self.deadline(header_timeout, idle_timeout) {
                None => changed.await,
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}
