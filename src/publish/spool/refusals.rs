//! Spooled events Kafka refused for good, and the events of their keys that wait behind them.
//!
//! A refused event is tried again after a delay, up to `spool.quarantine_after_attempts`
//! times, then moved to the quarantine. Until then every later event that shares a key with it
//! is held here, in spool order, so that it cannot reach Kafka ahead of it; events of other keys
//! go on. Pure bookkeeping: the forwarder does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::SpooledEvent;

/// Delay before the second attempt; it doubles for each further one, up to the maximum.
const FIRST_DELAY: Duration = Duration::from_secs(1);

pub(super) struct Refusals {
    max_attempts: u32,
    max_delay: Duration,
    /// Kept across rewinds, so attempts count from the first refusal since start-up.
    refused: BTreeMap<u64, Refused>,
    held: BTreeMap<u64, SpooledEvent>,
    /// The refused and held events of each key.
    by_key: HashMap<String, BTreeSet<u64>>,
}

struct Refused {
    keys: Vec<String>,
    attempts: u32,
    next_attempt: Instant,
    in_flight: bool,
    error: String,
}

/// What to do now with a refused event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Due {
    Retry,
    Quarantine { attempts: u32, error: String },
}

impl Refusals {
    pub(super) fn new(max_attempts: u32, max_delay: Duration) -> Self {
        Self {
            max_attempts,
            max_delay,
            refused: BTreeMap::new(),
            held: BTreeMap::new(),
            by_key: HashMap::new(),
        }
    }

    /// Events known here, refused or held: they count against the forward window.
    pub(super) fn len(&self) -> usize {
        self.refused.len() + self.held.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.refused.is_empty() && self.held.is_empty()
    }

    /// Refused events not yet settled (retried or awaiting the quarantine).
    pub(super) fn refused(&self) -> usize {
        self.refused.len()
    }

    /// The event read at `sequence`, if it may go to Kafka now. Otherwise it is either held
    /// behind an earlier refused event of one of its keys, or is itself a refused event read
    /// again after a rewind, which its next attempt reads anew.
    pub(super) fn admit(&mut self, sequence: u64, event: SpooledEvent) -> Option<SpooledEvent> {
        if self.refused.contains_key(&sequence) {
            return None;
        }
        let keys = keys_of(&event);
        if !self.waits(sequence, &keys) {
            return Some(event);
        }
        self.index(sequence, &keys);
        self.held.insert(sequence, event);
        None
    }

    /// Records a refusal for good of the event at `sequence` and returns whether it was the
    /// first. It is due again after a delay, or at once for the quarantine once it has used up
    /// its attempts.
    pub(super) fn refuse(
        &mut self,
        sequence: u64,
        keys: Vec<String>,
        error: String,
        now: Instant,
    ) -> bool {
        let first = !self.refused.contains_key(&sequence);
        if first {
            self.index(sequence, &keys);
        }
        let refused = self.refused.entry(sequence).or_insert(Refused {
            keys,
            attempts: 0,
            next_attempt: now,
            in_flight: false,
            error: String::new(),
        });
        refused.attempts += 1;
        refused.in_flight = false;
        refused.error = error;
        refused.next_attempt = if refused.attempts >= self.max_attempts {
            now
        } else {
            now + delay_after(sequence, refused.attempts, self.max_delay)
        };
        first
    }

    /// Refused events whose time has come, in spool order, each only once no earlier event of
    /// its keys waits; each is in flight until it is refused again, settled, or put off.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(u64, Due)> {
        let ready: Vec<u64> = self
            .refused
            .iter()
            .filter(|(sequence, refused)| {
                !refused.in_flight
                    && refused.next_attempt <= now
                    && !self.waits(**sequence, &refused.keys)
            })
            .map(|(sequence, _)| *sequence)
            .collect();
        let max_attempts = self.max_attempts;
        ready
            .into_iter()
            .filter_map(|sequence| {
                let refused = self.refused.get_mut(&sequence)?;
                refused.in_flight = true;
                let due = if refused.attempts >= max_attempts {
                    Due::Quarantine {
                        attempts: refused.attempts,
                        error: refused.error.clone(),
                    }
                } else {
                    Due::Retry
                };
                Some((sequence, due))
            })
            .collect()
    }

    /// When [`Self::due`] next has something to hand out, if it will without another event
    /// settling first.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.refused
            .iter()
            .filter(|(sequence, refused)| {
                !refused.in_flight && !self.waits(**sequence, &refused.keys)
            })
            .map(|(_, refused)| refused.next_attempt)
            .min()
    }

    /// Tries a due event again later: its quarantine could not be written.
    pub(super) fn put_off(&mut self, sequence: u64, now: Instant) {
        if let Some(refused) = self.refused.get_mut(&sequence) {
            refused.in_flight = false;
            refused.next_attempt = now + self.max_delay;
        }
    }

    /// The event at `sequence` left the spool (delivered or quarantined): returns, in spool
    /// order, the held events no earlier event of their keys waits for any more.
    pub(super) fn settled(&mut self, sequence: u64) -> Vec<(u64, SpooledEvent)> {
        let Some(refused) = self.refused.remove(&sequence) else {
            return Vec::new();
        };
        self.unindex(sequence, &refused.keys);
        let mut released = Vec::new();
        let candidates: Vec<u64> = self.held.keys().copied().collect();
        // In spool order, each freed event unindexed before the next is looked at, so that a
        // later event of the same key is freed with it.
        for held in candidates {
            let Some(keys) = self.held.get(&held).map(keys_of) else {
                continue;
            };
            if self.waits(held, &keys) {
                continue;
            }
            if let Some(event) = self.held.remove(&held) {
                self.unindex(held, &keys);
                released.push((held, event));
            }
        }
        released
    }

    /// Forwarding starts again from the oldest event: held events are read again. Called with
    /// nothing in flight.
    pub(super) fn rewind(&mut self) {
        for (sequence, event) in std::mem::take(&mut self.held) {
            self.unindex(sequence, &keys_of(&event));
        }
        for refused in self.refused.values_mut() {
            refused.in_flight = false;
        }
    }

    /// Whether an earlier refused or held event shares a key with this one.
    fn waits(&self, sequence: u64, keys: &[String]) -> bool {
        keys.iter().any(|key| {
            self.by_key
                .get(key)
                .is_some_and(|sequences| sequences.range(..sequence).next().is_some())
        })
    }

    fn index(&mut self, sequence: u64, keys: &[String]) {
        for key in keys {
            self.by_key.entry(key.clone()).or_default().insert(sequence);
        }
    }

    fn unindex(&mut self, sequence: u64, keys: &[String]) {
        for key in keys {
            if let Some(sequences) = self.by_key.get_mut(key) {
                sequences.remove(&sequence);
                if sequences.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
    }
}

/// The distinct record keys of an event: its order holds per key.
pub(super) fn keys_of(event: &SpooledEvent) -> Vec<String> {
    let mut keys: Vec<String> = event
        .records
        .iter()
        .map(|record| record.key.clone())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The delay before the next attempt, shortened by up to half by the event's sequence number.
/// A broker refuses a record batch as a whole (its size, say), so events refused in one batch
/// would, tried again together, land in one batch again and keep failing each other into the
/// quarantine; spread apart, each is tried on its own.
fn delay_after(sequence: u64, attempts: u32, max_delay: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    let delay = FIRST_DELAY.saturating_mul(1 << doublings).min(max_delay);
    // Fibonacci hashing: consecutive sequences land far apart in [0, 1).
    let spread = (sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1_u64 << 53) as f64;
    delay.mul_f64(1.0 - spread / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::spool::SpooledRecord;

    fn event(keys: &[&str]) -> SpooledEvent {
        SpooledEvent {
            accepted_at_ms: 0,
            records: keys
                .iter()
                .map(|key| SpooledRecord {
                    topic: "telecmi.event.answered".to_owned(),
                    key: (*key).to_owned(),
                    headers: Vec::new(),
                    payload: Vec::new(),
                })
                .collect(),
        }
    }

    fn sequences(released: &[(u64, SpooledEvent)]) -> Vec<u64> {
        released.iter().map(|(sequence, _)| *sequence).collect()
    }

    #[test]
    fn a_refused_event_holds_back_later_events_of_its_key_only() {
        let now = Instant::now();
        let mut refusals = Refusals::new(3, Duration::from_secs(30));
        assert!(refusals.refuse(1, vec!["a".to_owned()], "too large".to_owned(), now));
        assert!(refusals.admit(2, event(&["a"])).is_none(), "same key waits");
        assert!(
            refusals.admit(3, event(&["b"])).is_some(),
            "other keys go on"
        );
        assert!(
            refusals.admit(4, event(&["b", "a"])).is_none(),
            "an event with the key among others waits"
        );
        assert!(refusals.admit(5, event(&["a"])).is_none());
        assert_eq!(refusals.len(), 4);
        assert!(
            refusals.admit(0, event(&["a"])).is_some(),
            "an earlier event of the key, read again after a rewind, does not wait for a later one"
        );

        let released = refusals.settled(1);
        assert_eq!(sequences(&released), vec![2, 4, 5], "in spool order");
        assert!(refusals.is_empty());
        assert!(refusals.admit(6, event(&["a"])).is_some());
    }

    #[test]
    fn retries_back_off_then_the_event_is_due_for_the_quarantine() {
        let start = Instant::now();
        let mut refusals = Refusals::new(3, Duration::from_secs(3));
        let keys = || vec!["a".to_owned()];
        // Sequence 0: its delays are not shortened.
        assert!(refusals.refuse(0, keys(), "refused 1".to_owned(), start));
        assert!(refusals.due(start).is_empty(), "not before the delay");
        assert_eq!(refusals.next_due(), Some(start + Duration::from_secs(1)));

        let later = start + Duration::from_secs(1);
        assert_eq!(refusals.due(later), vec![(0, Due::Retry)]);
        assert_eq!(refusals.next_due(), None, "in flight");
        assert!(refusals.due(later).is_empty(), "handed out once");
        assert!(!refusals.refuse(0, keys(), "refused 2".to_owned(), later));
        assert_eq!(
            refusals.next_due(),
            Some(later + Duration::from_secs(2)),
            "the delay doubles"
        );

        let last = later + Duration::from_secs(2);
        assert_eq!(refusals.due(last), vec![(0, Due::Retry)]);
        refusals.refuse(0, keys(), "refused 3".to_owned(), last);
        assert_eq!(
            refusals.due(last),
            vec![(
                0,
                Due::Quarantine {
                    attempts: 3,
                    error: "refused 3".to_owned()
                }
            )],
            "at once after the last attempt"
        );

        refusals.put_off(0, last);
        assert_eq!(refusals.next_due(), Some(last + Duration::from_secs(3)));
        assert!(refusals.settled(0).is_empty());
        assert_eq!(refusals.refused(), 0);
    }

    #[test]
    fn events_refused_together_are_tried_again_apart_and_the_oldest_of_a_key_first() {
        let max_delay = Duration::from_secs(1);
        for sequence in 0..1_000 {
            let delay = delay_after(sequence, 1, max_delay);
            assert!(delay > max_delay / 2 && delay <= max_delay, "{delay:?}");
        }
        let gap = |one: u64, other: u64| {
            delay_after(one, 1, max_delay).abs_diff(delay_after(other, 1, max_delay))
        };
        assert!(gap(1, 2) > Duration::from_millis(50), "{:?}", gap(1, 2));
        assert!(gap(1, 3) > Duration::from_millis(50), "{:?}", gap(1, 3));
        assert!(gap(2, 3) > Duration::from_millis(50), "{:?}", gap(2, 3));

        let now = Instant::now();
        let mut refusals = Refusals::new(5, max_delay);
        refusals.refuse(1, vec!["a".to_owned()], "refused".to_owned(), now);
        refusals.refuse(2, vec!["a".to_owned()], "refused".to_owned(), now);
        refusals.refuse(3, vec!["b".to_owned()], "refused".to_owned(), now);
        let later = now + max_delay;
        assert_eq!(
            refusals.due(later),
            vec![(1, Due::Retry), (3, Due::Retry)],
            "2 waits for the earlier event of its key"
        );
        assert_eq!(refusals.next_due(), None);
        assert!(refusals.settled(1).is_empty());
        assert_eq!(refusals.due(later), vec![(2, Due::Retry)]);
    }

    #[test]
    fn a_rewind_forgets_held_events_but_not_attempts() {
        let now = Instant::now();
        let mut refusals = Refusals::new(2, Duration::from_secs(1));
        refusals.refuse(1, vec!["a".to_owned()], "refused".to_owned(), now);
        assert!(refusals.admit(2, event(&["a"])).is_none());
        let later = now + Duration::from_secs(1);
        assert_eq!(refusals.due(later), vec![(1, Due::Retry)]);

        refusals.rewind();
        assert_eq!(refusals.len(), 1, "the held event is read again");
        assert!(refusals.admit(1, event(&["a"])).is_none(), "refused: waits");
        assert!(refusals.admit(2, event(&["a"])).is_none(), "held again");
        assert_eq!(refusals.due(later), vec![(1, Due::Retry)], "due again");
        refusals.refuse(1, vec!["a".to_owned()], "refused".to_owned(), later);
        assert!(matches!(
            refusals.due(later).as_slice(),
            [(1, Due::Quarantine { attempts: 2, .. })]
        ));
    }
}
