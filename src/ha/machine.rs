//! The VRRPv3 election of one virtual router (RFC 9568 section 6, the Initialize, Backup and
//! Active states; "master" here, as RFC 5798 and keepalived call it) as a pure, time-driven
//! value.
//!
//! Owns: the timers (Adver_Timer, Master_Down_Timer), Skew_Time and Master_Down_Interval, the
//! learned Master_Adver_Interval, preemption (with `preempt_delay`), priority 0 and the address
//! owner's priority 255, and the tie-break on the primary address. Does not own: clocks,
//! sockets or packets. The caller feeds [`Event`]s with the current time and carries out the
//! [`Step`] it gets back (send an advert, take or give up the VIPs), then sleeps until
//! [`Machine::deadline`] and feeds [`Event::Timer`].
//!
//! Health tracking (`track`) changes the priority the machine runs with ([`Machine::set_effective`]):
//! a lower one is advertised from the next advert on, so a backup with preemption takes over;
//! [`Effective::Fault`] leaves mastership with a priority 0 advert and keeps the router in
//! [`State::Fault`], out of the election, until it clears.
//!
//! Start-up listening (not in RFC 9568): nodes started together would otherwise race, and
//! Skew_Time orders them by only a few milliseconds at fast adverts (3.9 ms between priorities
//! 150 and 100 at 10 ms), less than two processes' start-up jitter. A node listens
//! [`Machine::startup_listen_time`] longer before its first takeover, scaled by priority like
//! Skew_Time but on a scale of its own, so a higher-priority node that started up to
//! `startup_listen * difference / 255` later still becomes master first, and the other hears
//! it and follows. Hearing a master it follows ends the listening; a master found later, or
//! a backup's Master_Down timer after a master failed, never waits for it.
//!
//! Times are computed in nanoseconds rather than the RFC's whole centiseconds: Skew_Time for
//! priority 150 at a 10 ms interval is 4.14 ms, which centiseconds would round to 0 (keepalived
//! also keeps the fraction; its timers were measured here at 34.1 ms for exactly this case).

use std::net::IpAddr;
use std::num::NonZeroU8;
use std::time::{Duration, Instant};

/// Priority of the router that owns the addresses: it takes over at once and always preempts.
pub const OWNER_PRIORITY: u8 = 255;

/// What a router is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// 1 to 255; 0 is only ever sent, as "I am leaving".
    pub priority: u8,
    /// Advertisement_Interval: how often this router advertises as master.
    pub advert_interval: Duration,
    /// Preempt_Mode: whether this router takes over from a live master of lower priority.
    pub preempt: bool,
    /// How long after start-up this router waits before preempting a lower-priority master
    /// (keepalived's `preempt_delay`): a restarted node lets its links and backends settle.
    pub preempt_delay: Duration,
    /// The start-up listening period of priority 1 (`[vrrp] startup_listen`): after start-up
    /// the router may first become master only after Master_Down_Interval and
    /// `startup_listen * (255 - priority) / 255` more, unless it follows a master before.
    pub startup_listen: Duration,
    /// This router's primary address on the interface: the source of its adverts and the
    /// tie-break between equal priorities (an IPv6 router's link-local address).
    pub primary_ip: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// A tracked condition without a weight holds: neither advertising nor taking over
    /// (keepalived's FAULT). Not an RFC 9568 state; to other routers it looks like absence.
    Fault,
}

/// The priority the router runs with now, as health tracking makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    Priority(NonZeroU8),
    Fault,
}

/// A valid advert for our VRID from another router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    pub src: IpAddr,
    pub priority: u8,
    /// Its Max Advertise Interval; never zero (the caller drops such adverts).
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    Advert(Heard),
    /// A timer may have expired; early or repeated ones do nothing.
    Timer,
}

/// A master re-asserts itself against a lower-priority master at most this often.
pub const REASSERT_PERIOD: Duration = Duration::from_secs(1);

/// What the caller must do after an event, in this order: send an advert with this priority,
/// then act on the new state (take the VIPs on Master, give them up otherwise), then, if
/// `reassert`, send gratuitous ARPs for the VIPs this master holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    pub send: Option<u8>,
    pub became: Option<State>,
    /// Another router acts as master with a lower priority (a partition healed): the LAN's
    /// ARP caches may point at it, and it will not send gratuitous ARPs for us.
    pub reassert: bool,
}

impl Step {
    const NOTHING: Step = Step {
        send: None,
        became: None,
        reassert: false,
    };
}

#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    state: State,
    /// The master's advertised interval (our own until we hear one).
    master_adver_interval: Duration,
    /// Adver_Timer in Master, Master_Down_Timer in Backup, none in Initialize.
    timer: Option<Instant>,
    /// Lower-priority masters are preempted from this instant on.
    preempt_from: Option<Instant>,
    /// Until then (set at start-up, cleared on following a master or becoming one) a backup
    /// does not take over; see the module comment.
    listen_until: Option<Instant>,
    last_reassert: Option<Instant>,
    /// The priority advertised and compared: `params.priority` unless tracking lowered it.
    priority: u8,
    /// A fault condition holds (the state is Fault once started).
    fault: bool,
}

impl Machine {
    pub fn new(params: Params) -> Machine {
        Machine {
            params,
            state: State::Initialize,
            master_adver_interval: params.advert_interval,
            timer: None,
            preempt_from: None,
            listen_until: None,
            last_reassert: None,
            priority: params.priority,
            fault: false,
        }
    }

    /// The priority advertised now (the configured one, lowered by tracking); 0 in Fault.
    pub fn priority(&self) -> u8 {
        if self.fault {
            0
        } else {
            self.priority
        }
    }

    /// Run with `effective` from now on. A new priority is carried by the next advert (a
    /// master whose priority fell below a preempting backup's is taken over by it; a backup
    /// whose priority rose above the master's preempts it after Master_Down_Interval). A
    /// fault makes a master send priority 0 at once, so the best backup takes over after its
    /// Skew_Time; out of Fault the router starts over as backup.
    pub fn set_effective(&mut self, now: Instant, effective: Effective) -> Step {
        match effective {
            Effective::Fault => {
                if self.fault {
                    return Step::NOTHING;
                }
                self.fault = true;
                let send = match self.state {
                    // Start-up goes to Fault directly; a stopped router stays stopped.
                    State::Initialize | State::Fault => return Step::NOTHING,
                    State::Backup => None,
                    State::Master => Some(0),
                };
                self.state = State::Fault;
                self.timer = None;
                Step {
                    send,
                    became: Some(State::Fault),
                    reassert: false,
                }
            }
            Effective::Priority(p) => {
                self.priority = p.get();
                let was_fault = std::mem::replace(&mut self.fault, false);
                if was_fault && self.state == State::Fault {
                    self.become_backup(now, self.master_adver_interval)
                } else {
                    Step::NOTHING
                }
            }
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// When to feed [`Event::Timer`] next.
    pub fn deadline(&self) -> Option<Instant> {
        self.timer
    }

    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        self.master_adver_interval * (256 - u32::from(self.priority)) / 256
    }

    /// Master_Down_Interval = (3 * Master_Adver_Interval) + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// How much longer than Master_Down_Interval this router listens at start-up before it
    /// may first become master: `startup_listen * (255 - priority) / 255`.
    pub fn startup_listen_time(&self) -> Duration {
        self.params.startup_listen * (255 - u32::from(self.priority)) / 255
    }

    fn is_owner(&self) -> bool {
        self.params.priority == OWNER_PRIORITY
    }

    fn may_preempt(&self, now: Instant) -> bool {
        // The owner always preempts, whatever Preempt_Mode says (RFC 9568 section 6.1).
        self.is_owner()
            || (self.params.preempt && self.preempt_from.is_some_and(|from| now >= from))
    }

    pub fn handle(&mut self, now: Instant, event: Event) -> Step {
        match (self.state, event) {
            (State::Initialize, Event::Startup) => {
                self.preempt_from = Some(now + self.params.preempt_delay);
                self.master_adver_interval = self.params.advert_interval;
                self.listen_until = (!self.is_owner())
                    .then(|| now + self.master_down_interval() + self.startup_listen_time());
                if self.fault {
                    self.state = State::Fault;
                    Step {
                        send: None,
                        became: Some(State::Fault),
                        reassert: false,
                    }
                } else if self.is_owner() {
                    self.become_master(now)
                } else {
                    let step = self.become_backup(now, self.params.advert_interval);
                    self.timer = self.listen_until;
                    step
                }
            }
            (State::Initialize, _) | (_, Event::Startup) => Step::NOTHING,
            (State::Backup | State::Fault, Event::Shutdown) => self.stop(None),
            (State::Fault, Event::Timer) => Step::NOTHING,
            (State::Master, Event::Shutdown) => self.stop(Some(0)),
            (State::Backup, Event::Timer) => match (self.timer, self.listen_until) {
                (Some(t), Some(until)) if now >= t && now < until => {
                    self.timer = Some(until);
                    Step::NOTHING
                }
                (Some(t), _) if now >= t => self.become_master(now),
                _ => Step::NOTHING,
            },
            (State::Master, Event::Timer) => match self.timer {
                Some(t) if now >= t => {
                    // From the deadline, not from now, so a late wake-up does not stretch every
                    // later interval; but never into the past after a long stall.
                    let next = t + self.params.advert_interval;
                    self.timer = Some(if next > now {
                        next
                    } else {
                        now + self.params.advert_interval
                    });
                    self.send(self.priority)
                }
                _ => Step::NOTHING,
            },
            (_, Event::Advert(heard)) if heard.src == self.params.primary_ip => Step::NOTHING,
            (State::Fault, Event::Advert(heard)) => {
                // Out of Fault we start as a backup of this master: with its interval.
                if heard.priority > 0 {
                    self.master_adver_interval = heard.interval;
                }
                Step::NOTHING
            }
            (State::Backup, Event::Advert(heard)) => self.backup_heard(now, heard),
            (State::Master, Event::Advert(heard)) => self.master_heard(now, heard),
        }
    }

    fn backup_heard(&mut self, now: Instant, heard: Heard) -> Step {
        if heard.priority == 0 {
            // The master is leaving: take over after our Skew_Time only, so the highest
            // priority backup goes first.
            self.timer = Some(now + self.skew_time());
        } else if !self.may_preempt(now) || heard.priority >= self.priority {
            self.master_adver_interval = heard.interval;
            self.timer = Some(now + self.master_down_interval());
            // There is a master and we follow it: from now on the RFC's timers are right.
            self.listen_until = None;
        }
        // Else a lower-priority master: let Master_Down_Timer run out and preempt it.
        Step::NOTHING
    }

    fn master_heard(&mut self, now: Instant, heard: Heard) -> Step {
        if heard.priority == 0 {
            // Another master is leaving; confirm at once that we hold the VIPs.
            self.timer = Some(now + self.params.advert_interval);
            return self.send(self.priority);
        }
        let wins = heard.priority > self.priority
            || (heard.priority == self.priority
                && higher_address(heard.src, self.params.primary_ip));
        if wins {
            // One advert on the way out, which RFC 9568 does not send: the new master may
            // never have heard us (a partition healed, and our first advert after it was lost
            // or crossed its own), yet the LAN may have followed our gratuitous ARPs. This
            // advert makes it re-assert itself (below) instead of leaving clients with a MAC
            // that no longer answers until their caches expire. To any other router it is an
            // ordinary advert from a router of our priority.
            let step = self.become_backup(now, heard.interval);
            return Step {
                send: Some(self.priority),
                ..step
            };
        }
        // RFC 9568 discards it. But it comes from a router that believes it is master, which
        // happens when a partition heals, and the LAN may have followed its gratuitous ARPs.
        // Our next advert makes it yield; sending it now and re-announcing the VIPs (as
        // keepalived does) moves the clients back at once instead of when their caches expire.
        if self
            .last_reassert
            .is_some_and(|t| now.duration_since(t) < REASSERT_PERIOD)
        {
            return Step::NOTHING;
        }
        self.last_reassert = Some(now);
        self.timer = Some(now + self.params.advert_interval);
        Step {
            send: Some(self.priority),
            became: None,
            reassert: true,
        }
    }

    fn become_master(&mut self, now: Instant) -> Step {
        self.state = State::Master;
        self.listen_until = None;
        self.timer = Some(now + self.params.advert_interval);
        Step {
            send: Some(self.priority),
            became: Some(State::Master),
            reassert: false,
        }
    }

    fn become_backup(&mut self, now: Instant, master_interval: Duration) -> Step {
        self.state = State::Backup;
        self.master_adver_interval = master_interval;
        self.timer = Some(now + self.master_down_interval());
        Step {
            send: None,
            became: Some(State::Backup),
            reassert: false,
        }
    }

    fn stop(&mut self, send: Option<u8>) -> Step {
        self.state = State::Initialize;
        self.timer = None;
        Step {
            send,
            became: Some(State::Initialize),
            reassert: false,
        }
    }

    fn send(&self, priority: u8) -> Step {
        Step {
            send: Some(priority),
            became: None,
            reassert: false,
        }
    }
}

/// Whether `a` wins the tie-break over `b`: the larger address as an unsigned integer (RFC 9568
/// section 6.4.3), 32 or 128 bits. One virtual router never mixes families.
fn higher_address(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) > u32::from(b),
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) > u128::from(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const LOWER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const HIGHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn params(priority: u8, interval: Duration) -> Params {
        Params {
            priority,
            advert_interval: interval,
            preempt: true,
            preempt_delay: Duration::ZERO,
            startup_listen: Duration::ZERO,
            primary_ip: ME,
        }
    }

    fn heard(src: IpAddr, priority: u8, interval: Duration) -> Event {
        Event::Advert(Heard {
            src,
            priority,
            interval,
        })
    }

    const BECAME_MASTER: Step = Step {
        send: Some(100),
        became: Some(State::Master),
        reassert: false,
    };

    fn started(p: Params) -> (Machine, Instant) {
        let t0 = Instant::now();
        let mut m = Machine::new(p);
        m.handle(t0, Event::Startup);
        (m, t0)
    }

    #[test]
    fn skew_and_master_down_interval_per_rfc() {
        // (priority, interval, skew in ns, master down in ns)
        let cases = [
            (100, ms(1000), 609_375_000, 3_609_375_000),
            (150, ms(10), 4_140_625, 34_140_625),
            (100, ms(10), 6_093_750, 36_093_750),
            (255, ms(100), 390_625, 300_390_625),
            (1, ms(100), 99_609_375, 399_609_375),
        ];
        for (priority, interval, skew, down) in cases {
            let m = Machine::new(params(priority, interval));
            assert_eq!(
                m.skew_time().as_nanos(),
                skew,
                "skew {priority} {interval:?}"
            );
            assert_eq!(
                m.master_down_interval().as_nanos(),
                down,
                "down {priority} {interval:?}"
            );
        }
    }

    #[test]
    fn startup_waits_master_down_interval_then_takes_over() {
        let (mut m, t0) = started(params(100, ms(100)));
        assert_eq!(m.state(), State::Backup);
        let down = t0 + m.master_down_interval();
        assert_eq!(m.deadline(), Some(down));
        assert_eq!(
            m.handle(down - Duration::from_nanos(1), Event::Timer),
            Step::default()
        );
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.handle(down, Event::Timer), BECAME_MASTER);
        assert_eq!(m.deadline(), Some(down + ms(100)));
        // Adver_Timer: one advert per interval, kept on the deadline grid.
        let step = m.handle(down + ms(103), Event::Timer);
        assert_eq!(step.send, Some(100));
        assert_eq!(step.became, None);
        assert_eq!(m.deadline(), Some(down + ms(200)));
        // After a stall longer than an interval, the next one is an interval from now.
        m.handle(down + ms(500), Event::Timer);
        assert_eq!(m.deadline(), Some(down + ms(600)));
    }

    #[test]
    fn owner_takes_over_at_once_and_always_preempts() {
        let mut p = params(255, ms(100));
        p.preempt = false;
        let t0 = Instant::now();
        let mut m = Machine::new(p);
        assert_eq!(
            m.handle(t0, Event::Startup),
            Step {
                send: Some(255),
                became: Some(State::Master),
                reassert: false,
            }
        );
        // Even as a backup (after a tie with a higher address), it does not wait for a
        // lower-priority master to leave.
        m.handle(t0, heard(HIGHER_IP, 255, ms(100)));
        assert_eq!(m.state(), State::Backup);
        let deadline = m.deadline();
        m.handle(t0 + ms(10), heard(HIGHER_IP, 200, ms(100)));
        assert_eq!(m.deadline(), deadline, "lower priority advert discarded");
    }

    #[test]
    fn backup_follows_an_equal_or_higher_master_and_learns_its_interval() {
        let (mut m, t0) = started(params(100, ms(100)));
        for prio in [100, 200] {
            let at = t0 + ms(50);
            assert_eq!(
                m.handle(at, heard(HIGHER_IP, prio, ms(1000))),
                Step::default()
            );
            assert_eq!(m.master_adver_interval(), ms(1000));
            assert_eq!(m.deadline(), Some(at + ms(3000) + ms(1000) * 156 / 256));
        }
        // Equal priority from a lower address: still a master we follow as backup (only
        // masters compare addresses).
        let at = t0 + ms(60);
        m.handle(at, heard(LOWER_IP, 100, ms(100)));
        assert_eq!(m.deadline(), Some(at + m.master_down_interval()));
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn backup_preempts_a_lower_priority_master() {
        let (mut m, t0) = started(params(100, ms(100)));
        let before = m.deadline();
        m.handle(t0 + ms(50), heard(HIGHER_IP, 50, ms(100)));
        assert_eq!(m.deadline(), before, "lower priority advert is discarded");
        assert_eq!(m.handle(before.unwrap(), Event::Timer), BECAME_MASTER);
    }

    #[test]
    fn nopreempt_backup_follows_a_lower_priority_master() {
        let mut p = params(100, ms(100));
        p.preempt = false;
        let (mut m, t0) = started(p);
        for i in 1..=10 {
            let at = t0 + ms(100 * i);
            m.handle(at, heard(HIGHER_IP, 50, ms(100)));
            assert_eq!(m.handle(at, Event::Timer), Step::default());
            assert_eq!(m.deadline(), Some(at + m.master_down_interval()));
        }
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn preempt_delay_holds_preemption_back() {
        let mut p = params(100, ms(100));
        p.preempt_delay = ms(1000);
        let (mut m, t0) = started(p);
        // Within the delay, the lower-priority master is followed.
        for i in 1..10 {
            let at = t0 + ms(100 * i);
            m.handle(at, heard(HIGHER_IP, 50, ms(100)));
            assert_eq!(m.deadline(), Some(at + m.master_down_interval()));
        }
        // From the delay on, its adverts are discarded and the timer runs out.
        let held = m.deadline();
        m.handle(t0 + ms(1000), heard(HIGHER_IP, 50, ms(100)));
        assert_eq!(m.deadline(), held);
        assert_eq!(m.handle(held.unwrap(), Event::Timer), BECAME_MASTER);
    }

    #[test]
    fn priority_zero_makes_a_backup_take_over_after_skew_time() {
        let (mut m, t0) = started(params(100, ms(100)));
        m.handle(t0 + ms(10), heard(HIGHER_IP, 200, ms(100)));
        let at = t0 + ms(50);
        assert_eq!(m.handle(at, heard(HIGHER_IP, 0, ms(100))), Step::default());
        assert_eq!(m.deadline(), Some(at + m.skew_time()));
        assert_eq!(m.handle(at + m.skew_time(), Event::Timer), BECAME_MASTER);
    }

    fn master() -> (Machine, Instant) {
        let mut p = params(100, ms(100));
        p.priority = 255;
        let (mut m, t0) = started(p);
        m.params.priority = 100;
        m.priority = 100;
        assert_eq!(m.state(), State::Master);
        (m, t0)
    }

    #[test]
    fn master_answers_priority_zero_with_an_advert() {
        let (mut m, t0) = master();
        let at = t0 + ms(30);
        assert_eq!(
            m.handle(at, heard(HIGHER_IP, 0, ms(100))),
            Step {
                send: Some(100),
                became: None,
                reassert: false,
            }
        );
        assert_eq!(m.deadline(), Some(at + ms(100)));
    }

    #[test]
    fn master_yields_to_higher_priority_or_equal_priority_with_higher_address() {
        // (sender, priority, yields)
        let cases = [
            (LOWER_IP, 101, true),
            (HIGHER_IP, 101, true),
            (HIGHER_IP, 100, true),
            (LOWER_IP, 100, false),
            (HIGHER_IP, 99, false),
            (LOWER_IP, 1, false),
        ];
        for (src, prio, yields) in cases {
            let (mut m, t0) = master();
            let at = t0 + ms(30);
            let step = m.handle(at, heard(src, prio, ms(1000)));
            if yields {
                assert_eq!(step.became, Some(State::Backup), "{src} {prio}");
                assert_eq!(step.send, Some(100), "a parting advert");
                assert_eq!(m.master_adver_interval(), ms(1000));
                assert_eq!(m.deadline(), Some(at + m.master_down_interval()));
            } else {
                // It stays master and re-asserts itself against the lower master.
                let reassert = Step {
                    send: Some(100),
                    became: None,
                    reassert: true,
                };
                assert_eq!(step, reassert, "{src} {prio}");
                assert_eq!(m.state(), State::Master);
                assert_eq!(m.deadline(), Some(at + ms(100)));
            }
        }
        // Our own advert, looped back, is nobody's.
        let (mut m, t0) = master();
        assert_eq!(m.handle(t0, heard(ME, 200, ms(100))), Step::default());
    }

    #[test]
    fn reassertion_is_rate_limited() {
        let (mut m, t0) = master();
        assert!(m.handle(t0, heard(LOWER_IP, 50, ms(100))).reassert);
        for i in 1..10 {
            let step = m.handle(t0 + ms(100 * i), heard(LOWER_IP, 50, ms(100)));
            assert_eq!(step, Step::default(), "within REASSERT_PERIOD");
        }
        assert!(
            m.handle(t0 + REASSERT_PERIOD, heard(LOWER_IP, 50, ms(100)))
                .reassert
        );
    }

    #[test]
    fn address_tie_break_compares_as_unsigned_integers() {
        // 10.0.0.1 > 9.255.255.255 as a number though "1" < "9" as text; and 200.x > 100.x,
        // which a signed comparison of the first octet would get wrong.
        let (mut m, t0) = master();
        m.params.primary_ip = Ipv4Addr::new(9, 255, 255, 255).into();
        let step = m.handle(t0, heard(Ipv4Addr::new(10, 0, 0, 1).into(), 100, ms(100)));
        assert_eq!(step.became, Some(State::Backup));
        let (mut m, t0) = master();
        m.params.primary_ip = Ipv4Addr::new(200, 0, 0, 1).into();
        let step = m.handle(t0, heard(Ipv4Addr::new(100, 0, 0, 1).into(), 100, ms(100)));
        assert_eq!(step.became, None);
    }

    #[test]
    fn ipv6_tie_break_compares_128_bit_link_local_addresses() {
        let ll = |last: u16| IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, last));
        let (mut m, t0) = master();
        m.params.primary_ip = ll(2);
        assert_eq!(
            m.handle(t0, heard(ll(3), 100, ms(100))).became,
            Some(State::Backup)
        );
        let (mut m, t0) = master();
        m.params.primary_ip = ll(0x100);
        assert_eq!(m.handle(t0, heard(ll(0xff), 100, ms(100))).became, None);
    }

    #[test]
    fn shutdown_sends_priority_zero_only_from_master() {
        let (mut m, t0) = master();
        assert_eq!(
            m.handle(t0, Event::Shutdown),
            Step {
                send: Some(0),
                became: Some(State::Initialize),
                reassert: false,
            }
        );
        assert_eq!(m.deadline(), None);
        // Nothing moves it afterwards.
        assert_eq!(m.handle(t0, heard(HIGHER_IP, 0, ms(100))), Step::default());
        assert_eq!(m.handle(t0 + ms(10_000), Event::Timer), Step::default());

        let (mut m, t0) = started(params(100, ms(100)));
        assert_eq!(
            m.handle(t0, Event::Shutdown),
            Step {
                send: None,
                became: Some(State::Initialize),
                reassert: false,
            }
        );
    }

    #[test]
    fn two_routers_converge_on_the_higher_priority() {
        // Two machines wired back to back: every advert one sends, the other hears at once.
        let t0 = Instant::now();
        let mut a = Machine::new(params(150, ms(10)));
        let mut b = Machine::new(Params {
            primary_ip: HIGHER_IP,
            ..params(100, ms(10))
        });
        a.handle(t0, Event::Startup);
        b.handle(t0, Event::Startup);
        let mut now = t0;
        let end = t0 + ms(1000);
        let mut transitions = Vec::new();
        while now < end {
            exchange(&mut a, &mut b, now, &mut transitions);
            exchange(&mut b, &mut a, now, &mut transitions);
            now += Duration::from_micros(100);
        }
        assert_eq!(a.state(), State::Master);
        assert_eq!(b.state(), State::Backup);
        // a timed out first (34.1 ms vs 36.1 ms) and b never became master.
        assert_eq!(transitions, vec![(ME, State::Master)]);
    }

    /// Two back-to-back routers at 10 ms adverts with start-up listening `listen`, the
    /// lower-priority one (b) started `lead` before the other; the transitions seen.
    fn staggered_start(listen: Duration, lead: Duration) -> Vec<(IpAddr, State)> {
        let t0 = Instant::now();
        let mut a = Machine::new(Params {
            startup_listen: listen,
            ..params(150, ms(10))
        });
        let mut b = Machine::new(Params {
            primary_ip: HIGHER_IP,
            startup_listen: listen,
            ..params(100, ms(10))
        });
        b.handle(t0, Event::Startup);
        let mut transitions = Vec::new();
        let mut now = t0;
        let mut a_started = false;
        while now < t0 + ms(3000) {
            if !a_started && now >= t0 + lead {
                a.handle(now, Event::Startup);
                a_started = true;
            }
            if a_started {
                exchange(&mut a, &mut b, now, &mut transitions);
            }
            exchange(&mut b, &mut a, now, &mut transitions);
            now += Duration::from_micros(100);
        }
        transitions
    }

    #[test]
    fn without_startup_listening_a_lower_node_started_first_becomes_master_first() {
        // Skew_Time separates 150 and 100 by 2 ms at 10 ms adverts: a 5 ms lead wins.
        let t = staggered_start(Duration::ZERO, ms(5));
        assert_eq!(t.first(), Some(&(HIGHER_IP, State::Master)), "{t:?}");
    }

    #[test]
    fn startup_listening_lets_a_later_higher_node_win() {
        // 1 s of listening at priorities 150 and 100 covers a lead of up to 196 ms.
        for lead in [0, 5, 50, 150, 190] {
            let t = staggered_start(ms(1000), ms(lead));
            assert_eq!(t, vec![(ME, State::Master)], "lead {lead} ms");
        }
        // Beyond it the RFC's race is back (and preemption ends it).
        let t = staggered_start(ms(1000), ms(250));
        assert_eq!(t.first(), Some(&(HIGHER_IP, State::Master)), "{t:?}");
    }

    #[test]
    fn startup_listening_is_scaled_by_priority_and_ends_on_following_a_master() {
        let listen = |priority| Params {
            startup_listen: ms(1020),
            ..params(priority, ms(10))
        };
        let (m, t0) = started(listen(100));
        // (255 - 100) / 255 of 1020 ms = 620 ms, on top of Master_Down_Interval.
        assert_eq!(m.startup_listen_time(), ms(620));
        assert_eq!(m.deadline(), Some(t0 + m.master_down_interval() + ms(620)));
        let (m, _) = started(listen(254));
        assert_eq!(m.startup_listen_time(), ms(4));
        let (m, t0) = started(listen(255));
        assert_eq!(m.state(), State::Master, "the owner does not listen");
        assert_eq!(m.deadline(), Some(t0 + ms(10)));

        // A master heard and followed: its death is detected after Master_Down_Interval.
        let (mut m, t0) = started(listen(100));
        let at = t0 + ms(5);
        m.handle(at, heard(HIGHER_IP, 150, ms(10)));
        let down = at + m.master_down_interval();
        assert_eq!(m.deadline(), Some(down));
        assert_eq!(m.handle(down, Event::Timer), BECAME_MASTER);

        // A fault at start-up that clears early does not shorten the listening.
        let (mut m, t0) = started(listen(100));
        let until = m.deadline().unwrap();
        m.set_effective(t0, Effective::Fault);
        m.set_effective(t0 + ms(1), prio(100));
        assert_eq!(m.state(), State::Backup);
        let first = m.deadline().unwrap();
        assert!(first < until);
        assert_eq!(m.handle(first, Event::Timer), Step::default());
        assert_eq!(m.deadline(), Some(until));
        assert_eq!(m.handle(until, Event::Timer), BECAME_MASTER);
    }

    fn prio(n: u8) -> Effective {
        Effective::Priority(NonZeroU8::new(n).unwrap())
    }

    /// Runs two back-to-back machines from `from` for `span` in 100 µs steps; returns the
    /// transitions seen and the time reached.
    fn run_pair(
        a: &mut Machine,
        b: &mut Machine,
        from: Instant,
        span: Duration,
    ) -> (Vec<(IpAddr, State)>, Instant) {
        let mut now = from;
        let mut transitions = Vec::new();
        while now < from + span {
            exchange(a, b, now, &mut transitions);
            exchange(b, a, now, &mut transitions);
            now += Duration::from_micros(100);
        }
        (transitions, now)
    }

    fn pair(interval: Duration) -> (Machine, Machine, Instant) {
        let t0 = Instant::now();
        let mut a = Machine::new(params(150, interval));
        let mut b = Machine::new(Params {
            primary_ip: HIGHER_IP,
            ..params(100, interval)
        });
        a.handle(t0, Event::Startup);
        b.handle(t0, Event::Startup);
        let (_, now) = run_pair(&mut a, &mut b, t0, ms(1000));
        assert_eq!((a.state(), b.state()), (State::Master, State::Backup));
        (a, b, now)
    }

    #[test]
    fn a_master_lowered_below_the_backup_is_taken_over_and_takes_back_on_recovery() {
        let (mut a, mut b, now) = pair(ms(100));
        // Nothing changes at once: the next advert carries the new priority.
        assert_eq!(a.set_effective(now, prio(50)), Step::default());
        assert_eq!(a.state(), State::Master);
        assert_eq!(a.priority(), 50);
        let (transitions, now) = run_pair(&mut a, &mut b, now, ms(1000));
        assert_eq!(
            transitions,
            vec![(HIGHER_IP, State::Master), (ME, State::Backup)],
            "b preempts after its Master_Down_Interval, a yields on b's advert"
        );
        // Recovered: a (preempt on) takes back once b's adverts no longer hold it.
        assert_eq!(a.set_effective(now, prio(150)), Step::default());
        let (transitions, _) = run_pair(&mut a, &mut b, now, ms(1000));
        assert_eq!(
            transitions,
            vec![(ME, State::Master), (HIGHER_IP, State::Backup)]
        );
    }

    #[test]
    fn a_lowered_master_still_above_the_backup_stays_master() {
        let (mut a, mut b, now) = pair(ms(100));
        a.set_effective(now, prio(101));
        let (transitions, _) = run_pair(&mut a, &mut b, now, ms(1000));
        assert_eq!(transitions, vec![]);
        assert_eq!(a.state(), State::Master);
    }

    #[test]
    fn a_backup_whose_priority_rises_above_the_master_preempts_it() {
        let (mut a, mut b, now) = pair(ms(100));
        b.set_effective(now, prio(200));
        let (transitions, _) = run_pair(&mut a, &mut b, now, ms(1000));
        assert_eq!(
            transitions,
            vec![(HIGHER_IP, State::Master), (ME, State::Backup)]
        );
        // Without preemption it would not.
        let (mut a, mut b, now) = pair(ms(100));
        b.params.preempt = false;
        b.set_effective(now, prio(200));
        let (transitions, _) = run_pair(&mut a, &mut b, now, ms(1000));
        assert_eq!(transitions, vec![]);
    }

    #[test]
    fn fault_leaves_mastership_with_priority_zero_and_stays_out_until_cleared() {
        let (mut a, mut b, now) = pair(ms(100));
        assert_eq!(
            a.set_effective(now, Effective::Fault),
            Step {
                send: Some(0),
                became: Some(State::Fault),
                reassert: false,
            }
        );
        assert_eq!(
            (a.state(), a.priority(), a.deadline()),
            (State::Fault, 0, None)
        );
        // Repeated faults do nothing more; b hears the priority 0 advert.
        assert_eq!(a.set_effective(now, Effective::Fault), Step::default());
        b.handle(now, heard(ME, 0, ms(100)));
        let (transitions, now) = run_pair(&mut a, &mut b, now, ms(2000));
        assert_eq!(
            transitions,
            vec![(HIGHER_IP, State::Master)],
            "b takes over; a neither advertises nor takes over while in Fault"
        );
        assert_eq!(a.state(), State::Fault);
        // No timer runs in Fault.
        assert_eq!(a.handle(now, Event::Timer), Step::default());
        // Cleared: a starts over as backup, then preempts the lower b.
        let step = a.set_effective(now, prio(150));
        assert_eq!(step.became, Some(State::Backup));
        assert_eq!(a.deadline(), Some(now + a.master_down_interval()));
        let (transitions, _) = run_pair(&mut a, &mut b, now, ms(1000));
        assert_eq!(
            transitions,
            vec![(ME, State::Master), (HIGHER_IP, State::Backup)]
        );
    }

    #[test]
    fn fault_of_a_backup_or_before_start_up() {
        let (mut m, t0) = started(params(100, ms(100)));
        assert_eq!(
            m.set_effective(t0, Effective::Fault),
            Step {
                send: None,
                became: Some(State::Fault),
                reassert: false,
            }
        );
        assert_eq!(m.handle(t0 + ms(10_000), Event::Timer), Step::default());
        assert_eq!(m.state(), State::Fault);
        assert_eq!(
            m.handle(t0, Event::Shutdown).became,
            Some(State::Initialize)
        );

        let t0 = Instant::now();
        let mut m = Machine::new(params(100, ms(100)));
        assert_eq!(m.set_effective(t0, Effective::Fault), Step::default());
        assert_eq!(m.handle(t0, Event::Startup).became, Some(State::Fault));
        assert_eq!(m.deadline(), None);
        // Even the owner's priority does not override a fault.
        let mut m = Machine::new(params(255, ms(100)));
        m.set_effective(t0, Effective::Fault);
        assert_eq!(m.handle(t0, Event::Startup).send, None);
    }

    fn exchange(
        me: &mut Machine,
        other: &mut Machine,
        now: Instant,
        transitions: &mut Vec<(IpAddr, State)>,
    ) {
        let src = me.params().primary_ip;
        let step = me.handle(now, Event::Timer);
        if let Some(s) = step.became {
            transitions.push((src, s));
        }
        if let Some(priority) = step.send {
            let interval = me.params().advert_interval;
            if let Some(s) = other.handle(now, heard(src, priority, interval)).became {
                transitions.push((other.params().primary_ip, s));
            }
        }
    }
}
