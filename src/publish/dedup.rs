//! The optional de-duplication window: a re-sent webhook has the same deterministic event id,
//! so an id seen (and safely accepted) within the window is answered without a second copy.

use moka::sync::Cache;
use uuid::Uuid;

use crate::config::DedupSettings;

pub struct Dedup {
    accepted: Cache<Uuid, ()>,
}

impl Dedup {
    pub fn new(settings: &DedupSettings) -> Self {
        Self {
            accepted: Cache::builder()
                .max_capacity(settings.max_entries.get())
                .time_to_live(settings.window_seconds)
                .build(),
        }
    }

    pub fn already_accepted(&self, id: &Uuid) -> bool {
        self.accepted.contains_key(id)
    }

    /// Call only once the event is safe (in Kafka or the spool): an id recorded for an event
    /// that was not kept would turn the sender's retry into a loss.
    pub fn record_accepted(&self, id: Uuid) {
        self.accepted.insert(id, ());
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;
    use std::time::Duration;

    use super::*;

    #[test]
    fn remembers_ids_within_the_window_and_capacity() {
        let dedup = Dedup::new(&DedupSettings {
            enabled: true,
            window_seconds: Duration::from_secs(60),
            max_entries: NonZeroU64::new(100).expect("not zero"),
        });
        let id = Uuid::new_v4();
        assert!(!dedup.already_accepted(&id));
        dedup.record_accepted(id);
        assert!(dedup.already_accepted(&id));
        assert!(!dedup.already_accepted(&Uuid::new_v4()));
    }

    #[test]
    fn forgets_ids_after_the_window() {
        let dedup = Dedup::new(&DedupSettings {
            enabled: true,
            window_seconds: Duration::from_secs(1),
            max_entries: NonZeroU64::new(100).expect("not zero"),
        });
        let id = Uuid::new_v4();
        dedup.record_accepted(id);
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(!dedup.already_accepted(&id));
    }
}
