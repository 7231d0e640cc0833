//! The in-memory hand-over of committed events from the writer to the forwarder.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::lock;

/// Committed events held in memory for the forwarder at most (a few MB of encoded events).
pub(super) const TAIL_CAPACITY: usize = 1_024;

/// Events handed from the writer to the forwarder in memory as they are committed, so that the
/// forwarder need not read back from the file what was written a moment ago. The file stays
/// the truth: when the forwarder lags (Kafka down, a backlog) and an event does not fit, the
/// tail is marked lost, and the forwarder reads the file until it has caught up again.
///
/// Every committed event is pushed, or marks the tail lost, after its commit; so a forwarder
/// that finds the tail not lost may skip from its cursor to the first event held here.
#[derive(Debug, Default)]
pub(super) struct Tail {
    pub(super) events: Mutex<VecDeque<(u64, Vec<u8>)>>,
    pub(super) lost: AtomicBool,
}

impl Tail {
    pub(super) fn push(&self, sequence: u64, event: Vec<u8>) {
        let mut events = lock(&self.events);
        if events.len() < TAIL_CAPACITY {
            events.push_back((sequence, event));
        } else {
            self.lost.store(true, Ordering::Release);
        }
    }

    /// Whether events were left out since the last call: the file must be read.
    pub(super) fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }

    /// Up to `limit` events in sequence order, from the first at or after `from`; older ones
    /// were read from the file already and are dropped.
    pub(super) fn take(&self, from: u64, limit: usize) -> Vec<(u64, Vec<u8>)> {
        let mut events = lock(&self.events);
        Self::drop_before(&mut events, from);
        let taken = events.len().min(limit);
        events.drain(..taken).collect()
    }

    pub(super) fn forget_before(&self, from: u64) {
        Self::drop_before(&mut lock(&self.events), from);
    }

    fn drop_before(events: &mut VecDeque<(u64, Vec<u8>)>, from: u64) {
        while events.front().is_some_and(|(sequence, _)| *sequence < from) {
            events.pop_front();
        }
    }
}
