//! The optional per-caller rate limit (off by default: TeleCMI calls from few addresses, so a
//! limit per address would throttle TeleCMI itself before anyone else).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl RateLimit {
    /// `None` when `per_second` is 0 (off).
    pub fn new(per_second: u32, burst: NonZeroU32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        })
    }

    /// `Err` with how long the caller should wait.
    pub fn check(&self, caller: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&caller)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the state of callers whose allowance is full again, so memory follows the number
    /// of recent callers, not of every caller ever seen.
    pub fn forget_idle_callers(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_gets_its_own_burst_then_waits() {
        let limit = RateLimit::new(1, NonZeroU32::new(3).expect("not zero")).expect("on");
        let first: IpAddr = "203.0.113.1".parse().expect("ip");
        let second: IpAddr = "203.0.113.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(limit.check(first).is_ok());
        }
        let wait = limit.check(first).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limit.check(second).is_ok(),
            "another caller is not affected"
        );
        assert!(
            RateLimit::new(0, NonZeroU32::new(10).expect("not zero")).is_none(),
            "0 turns it off"
        );
    }
}
