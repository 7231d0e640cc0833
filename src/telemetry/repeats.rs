//! Log lines that repeat: the first is logged, then at most one per [`REPEAT_INTERVAL`] with
//! the count held back since. With the brokers down, librdkafka repeats itself many times a
//! second and every webhook meets the same refusal; an operator needs the cause once and a
//! count, not a flood that buries everything else. Pure: the caller passes the clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a repeated message stays quiet after it was logged.
const REPEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Distinct messages remembered at most; the vocabularies involved are far smaller.
const KINDS_REMEMBERED: usize = 512;

#[derive(Debug, Default)]
pub struct Repeats {
    windows: HashMap<String, RepeatWindow>,
}

#[derive(Debug)]
struct RepeatWindow {
    logged_at: Instant,
    held_back: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, saying how many like it were held back since it was last logged.
    Log {
        held_back: u64,
    },
    HoldBack,
}

impl Repeats {
    /// Messages are the same when they differ only in digits (counts, durations, ports).
    pub fn admit(&mut self, message: &str, now: Instant) -> Verdict {
        let key = shape(message);
        if let Some(window) = self.windows.get_mut(&key) {
            if now.duration_since(window.logged_at) < REPEAT_INTERVAL {
                window.held_back += 1;
                return Verdict::HoldBack;
            }
            let held_back = std::mem::take(&mut window.held_back);
            window.logged_at = now;
            return Verdict::Log { held_back };
        }
        if self.windows.len() >= KINDS_REMEMBERED {
            self.windows
                .retain(|_, window| now.duration_since(window.logged_at) < REPEAT_INTERVAL);
        }
        if self.windows.len() < KINDS_REMEMBERED {
            self.windows.insert(
                key,
                RepeatWindow {
                    logged_at: now,
                    held_back: 0,
                },
            );
        }
        Verdict::Log { held_back: 0 }
    }
}

/// The message with every run of digits replaced by one `#`.
pub fn shape(message: &str) -> String {
    let mut shape = String::with_capacity(message.len());
    for c in message.chars() {
        if !c.is_ascii_digit() {
            shape.push(c);
        } else if !shape.ends_with('#') {
            shape.push('#');
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_message_is_logged_once_then_once_per_interval_with_a_count() {
        let mut repeats = Repeats::default();
        let start = Instant::now();
        let refused = |n: u32| format!("Connect to 127.0.0.1:9092 failed (after {n}ms)");
        let at = |millis: u64| start + Duration::from_millis(millis);
        assert_eq!(
            repeats.admit(&refused(0), at(0)),
            Verdict::Log { held_back: 0 }
        );
        // librdkafka's rate with the broker down: about 27 lines a second, for 30 seconds.
        let held: Vec<Verdict> = (1..=809)
            .map(|n| repeats.admit(&refused(n), at(u64::from(n) * 37)))
            .collect();
        assert!(held.iter().all(|verdict| *verdict == Verdict::HoldBack));
        assert_eq!(
            repeats.admit("Timed out 1 in-flight", at(1_000)),
            Verdict::Log { held_back: 0 },
            "another message is logged at once"
        );
        assert_eq!(
            repeats.admit(&refused(5), at(30_000)),
            Verdict::Log { held_back: 809 },
            "one line per interval, with the count held back"
        );
        assert_eq!(repeats.admit(&refused(6), at(30_001)), Verdict::HoldBack);
    }

    #[test]
    fn a_bounded_number_of_messages_is_remembered() {
        let mut repeats = Repeats::default();
        let start = Instant::now();
        for n in 0..KINDS_REMEMBERED * 2 {
            repeats.admit(&format!("F{}", "x".repeat(n)), start);
        }
        assert!(repeats.windows.len() <= KINDS_REMEMBERED);
    }
}
