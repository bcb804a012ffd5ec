//! The memory the host holds on behalf of clients, under one process-wide budget.
//!
//! A client decides how much memory a request costs (a large page, a slow body) and
//! how long it is held (a reader that never reads). Without a budget, a few hundred
//! such clients push the process past its container limit and the kernel kills it,
//! taking every other client's requests with it. So every byte held for a request
//! is charged here: the request body while it is read, the instance's linear memory
//! while the handler runs, and the response until the client has taken it. Past the
//! budget, new work is refused with 503 and `Retry-After` (counted as
//! `memory_budget`), which a client or a load balancer can act on; an OOM kill
//! helps nobody.
//!
//! A charge is released when its [`Charge`] is dropped, whichever way the request
//! ends (answered, refused, cut by a deadline, the connection reset).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The process-wide budget. Cheap to clone.
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    used: AtomicUsize,
    /// The part of `used` held by responses (see [`RESPONSE_SHARE_NUM`]).
    responses: AtomicUsize,
    /// The part of `responses` held by large ones (see [`LARGE_RESPONSE_BYTES`]).
    large: AtomicUsize,
    gauge: prometheus::IntGauge,
    /// Woken when bytes are given back, for requests waiting for room.
    freed: Notify,
}

/// What part of the budget may hold responses waiting for their clients: the rest
/// stays for instances and bodies, so that while slow readers fill their share,
/// other requests are still served rather than refused.
const RESPONSE_SHARE_NUM: usize = 3;
const RESPONSE_SHARE_DEN: usize = 4;

/// A response larger than this is large: large ones together may hold only half
/// the budget. Clients that never read their large answers (the largest page is
/// about 6 MB) would otherwise fill the responses' share, and every read after them,
/// however small its answer, would be refused until the write deadline cut them.
const LARGE_RESPONSE_BYTES: usize = 1 << 20;
const LARGE_SHARE_DEN: usize = 2;

/// What part of the budget new work (a request body, an instance about to start)
/// may not take: room kept for the work already admitted, whose instances may grow
/// past their admission estimate and whose responses are still being collected. A
/// burst then queues at admission (where it can wait) instead of failing half-way:
/// without it, 60 concurrent reads filled an 8 MiB budget with instances and most
/// of them were refused the few hundred bytes of their own 404.
const HEADROOM_DEN: usize = 8;

impl MemoryBudget {
    pub fn new(limit: usize, gauge: prometheus::IntGauge) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                responses: AtomicUsize::new(0),
                large: AtomicUsize::new(0),
                gauge,
                freed: Notify::new(),
            }),
        }
    }

    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// An empty charge for new work (a body, an instance), to grow as bytes arrive.
    pub fn empty(&self) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
            response: false,
            large: 0,
        }
    }

    /// An empty charge for a response, which counts against the responses' share.
    pub fn empty_response(&self) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
            response: true,
            large: 0,
        }
    }

    fn new_work_limit(&self) -> usize {
        self.inner.limit - self.inner.limit / HEADROOM_DEN
    }

    /// A charge of `bytes`, waiting (until `until`) for others to give back room if
    /// there is not enough now: for an instance about to start, which a burst of
    /// requests may have to queue for briefly, rather than be refused.
    pub async fn charge_waiting(&self, bytes: usize, until: Instant) -> Option<Charge> {
        let mut charge = self.empty();
        loop {
            if charge.try_grow(bytes) {
                return Some(charge);
            }
            let freed = self.inner.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before the second look, so a release in between is not missed.
            freed.as_mut().enable();
            if charge.try_grow(bytes) {
                return Some(charge);
            }
            if tokio::time::timeout_at(until.into(), freed).await.is_err() {
                return None;
            }
        }
    }

    /// `bytes` more, if the total stays within `limit`.
    fn try_add_within(&self, bytes: usize, limit: usize) -> bool {
        let added = self
            .inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok();
        if added {
            self.inner.gauge.add(gauge_value(bytes));
        }
        added
    }

    /// `bytes` more, even past the limit: for work already done whose result must
    /// reach the client (a write that happened must not be reported as refused).
    fn force_add(&self, bytes: usize) {
        self.inner.used.fetch_add(bytes, Ordering::AcqRel);
        self.inner.gauge.add(gauge_value(bytes));
    }

    fn release(&self, bytes: usize, response: bool) {
        if bytes > 0 {
            if response {
                self.inner.responses.fetch_sub(bytes, Ordering::AcqRel);
            }
            self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
            self.inner.gauge.sub(gauge_value(bytes));
            self.inner.freed.notify_waiters();
        }
    }
}

fn gauge_value(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Bytes charged to the budget for one request; given back on drop.
pub struct Charge {
    budget: MemoryBudget,
    bytes: usize,
    /// Made by [`MemoryBudget::empty_response`]: its bytes count in the responses'
    /// share too.
    response: bool,
    /// Its bytes counted among the large responses' (all of them once it is large).
    large: usize,
}

impl Charge {
    /// Charge `more` bytes of new work if they fit below the headroom kept for
    /// admitted work; false (and nothing charged) if not.
    pub fn try_grow(&mut self, more: usize) -> bool {
        self.grow_within(more, self.budget.new_work_limit())
    }

    /// Charge `more` bytes for work already admitted (an instance's memory growing),
    /// if they fit in the whole budget.
    pub fn try_grow_running(&mut self, more: usize) -> bool {
        self.grow_within(more, self.budget.inner.limit)
    }

    fn grow_within(&mut self, more: usize, limit: usize) -> bool {
        let ok = self.budget.try_add_within(more, limit);
        if ok {
            self.bytes += more;
        }
        ok
    }

    /// Charge `more` bytes of a response, if they fit in the responses' share of the
    /// budget and in the whole budget.
    pub fn try_grow_response(&mut self, more: usize) -> bool {
        debug_assert!(
            self.response,
            "a response's charge is made by empty_response"
        );
        let inner = self.budget.inner.clone();
        // Once large, all of a response's bytes count among the large ones.
        let to_large = if self.bytes + more > LARGE_RESPONSE_BYTES {
            self.bytes + more - self.large
        } else {
            0
        };
        if to_large > 0 && !add_within(&inner.large, to_large, inner.limit / LARGE_SHARE_DEN) {
            return false;
        }
        let share = inner.limit / RESPONSE_SHARE_DEN * RESPONSE_SHARE_NUM;
        let fits = add_within(&inner.responses, more, share);
        if !fits || !self.grow_within(more, inner.limit) {
            if fits {
                inner.responses.fetch_sub(more, Ordering::AcqRel);
            }
            inner.large.fetch_sub(to_large, Ordering::AcqRel);
            return false;
        }
        self.large += to_large;
        true
    }

    /// Charge `more` bytes whatever the budget says (see [`MemoryBudget::force_add`]).
    pub fn force_grow(&mut self, more: usize) {
        if self.response {
            self.budget
                .inner
                .responses
                .fetch_add(more, Ordering::AcqRel);
        }
        self.budget.force_add(more);
        self.bytes += more;
    }

    /// Give back `less` bytes (saturating at what this charge holds).
    pub fn shrink(&mut self, less: usize) {
        let less = less.min(self.bytes);
        self.budget.release(less, self.response);
        self.bytes -= less;
        let large = less.min(self.large);
        self.budget.inner.large.fetch_sub(large, Ordering::AcqRel);
        self.large -= large;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes, self.response);
        self.budget
            .inner
            .large
            .fetch_sub(self.large, Ordering::AcqRel);
    }
}

/// `more` added to `counter` if the total stays within `limit`.
fn add_within(counter: &AtomicUsize, more: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(more).filter(|&total| total <= limit)
        })
        .is_ok()
}

/// The write deadline of the response a connection is sending, shared between the
/// response body (which starts and ends it) and the connection's task (which
/// closes the connection when it passes). The socket's write timeout resets on
/// every byte that goes out, so alone it lets a reader that takes a byte every few
/// seconds hold its response for ever; this deadline does not move.
#[derive(Clone, Default)]
pub struct ResponseClock {
    inner: Arc<ClockInner>,
}

#[derive(Default)]
struct ClockInner {
    /// The deadline as nanoseconds after `origin`; 0 when no response is being
    /// written.
    deadline: AtomicUsize,
    origin: std::sync::OnceLock<Instant>,
    changed: Notify,
}

impl ResponseClock {
    fn origin(&self) -> Instant {
        *self.inner.origin.get_or_init(Instant::now)
    }

    fn start(&self, within: Duration) {
        let origin = self.origin();
        let at = (Instant::now() + within).saturating_duration_since(origin);
        let nanos = usize::try_from(at.as_nanos()).unwrap_or(usize::MAX).max(1);
        self.inner.deadline.store(nanos, Ordering::Release);
        self.inner.changed.notify_one();
    }

    fn finish(&self) {
        self.inner.deadline.store(0, Ordering::Release);
        self.inner.changed.notify_one();
    }

    /// When the response being written must be done by, if one is.
    pub fn deadline(&self) -> Option<Instant> {
        match self.inner.deadline.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.origin() + Duration::from_nanos(nanos as u64)),
        }
    }

    /// Resolves when a response starts or ends.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }
}

/// Chunks a response is handed to the connection in: the connection pulls the
/// next one only when it has written the last, so a slow reader does not make the
/// host copy the whole response into the socket's write queue at once.
const CHUNK: usize = 64 * 1024;

/// A complete response body that holds its budget charge until it has been taken
/// by the connection (or dropped), and starts the connection's write deadline.
pub struct ChargedBody {
    data: Bytes,
    charge: Option<Charge>,
    clock: Option<(ResponseClock, Duration)>,
    started: bool,
}

impl ChargedBody {
    pub fn new(data: Bytes, charge: Charge, clock: Option<(ResponseClock, Duration)>) -> Self {
        Self {
            data,
            charge: Some(charge),
            clock,
            started: false,
        }
    }

    fn done(&mut self) {
        self.charge = None;
        if let Some((clock, _)) = self.clock.take() {
            clock.finish();
        }
    }
}

impl Body for ChargedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.started {
            this.started = true;
            if let Some((clock, within)) = &this.clock {
                clock.start(*within);
            }
        }
        if this.data.is_empty() {
            this.done();
            return Poll::Ready(None);
        }
        let chunk = this.data.split_to(this.data.len().min(CHUNK));
        if this.data.is_empty() {
            // The last chunk is handed over: the whole response now sits in the
            // connection's buffers, which the socket's write timeout bounds.
            this.done();
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

impl Drop for ChargedBody {
    fn drop(&mut self) {
        self.done();
    }
}

/// glibc's malloc keeps freed memory in its arenas and, after a large block is
/// freed, raises its mmap threshold (up to 32 MiB) so later large blocks come from
/// the arenas too: after a burst of large responses the process kept 444 MiB it no
/// longer used. A fixed threshold keeps blocks of 256 KiB and more (response
/// bodies, large documents) in their own mappings, returned to the system when
/// freed; `trim` gives back what the arenas hold free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod malloc {
    const M_MMAP_THRESHOLD: i32 = -3;
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }

    pub fn fix_mmap_threshold(bytes: i32) -> bool {
        // SAFETY: mallopt only sets a malloc tunable; any value is accepted or refused
        // (returns 0), it does not touch memory the program owns.
        unsafe { mallopt(M_MMAP_THRESHOLD, bytes) == 1 }
    }

    pub fn trim() {
        // SAFETY: malloc_trim releases free pages of the arenas under glibc's own
        // locks; it does not touch allocated memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod malloc {
    pub fn fix_mmap_threshold(_bytes: i32) -> bool {
        false
    }
    pub fn trim() {}
}

/// Set the allocator up to give memory back, and start a thread that trims the
/// allocator's free memory once the budget has drained after being used (at most
/// every `every`).
pub fn return_memory_to_the_system(budget: &MemoryBudget, every: Duration) {
    if !malloc::fix_mmap_threshold(256 * 1024) {
        tracing::debug!(
            "allocator tunables not available; freed memory is returned as the allocator decides"
        );
        return;
    }
    let budget = budget.clone();
    let spawned = std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(move || {
            let mut high = 0usize;
            loop {
                std::thread::sleep(every);
                let used = budget.used();
                high = high.max(used);
                // Trim after a burst, once most of it is given back: not while the
                // budget is in use (the memory would be needed again at once).
                if high >= 16 << 20 && used <= high / 4 {
                    malloc::trim();
                    high = used;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the malloc-trim thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> MemoryBudget {
        MemoryBudget::new(limit, prometheus::IntGauge::new("b", "b").expect("gauge"))
    }

    #[test]
    fn charges_fit_the_limit_and_are_given_back_on_drop() {
        let b = budget(800);
        let mut c = b.empty();
        assert!(c.try_grow(600));
        let mut d = b.empty();
        assert!(!d.try_grow(101), "new work stops an eighth below the limit");
        assert!(d.try_grow(100));
        assert!(!d.try_grow_running(101), "admitted work stops at the limit");
        assert!(d.try_grow_running(100));
        assert_eq!(b.used(), 800);
        drop(c);
        assert_eq!(b.used(), 200);
        d.shrink(1000);
        assert_eq!((b.used(), d.bytes()), (0, 0));
    }

    #[test]
    fn a_forced_charge_may_pass_the_limit_and_blocks_new_work() {
        let b = budget(80);
        let mut c = b.empty_response();
        c.force_grow(250);
        assert_eq!(b.used(), 250);
        assert!(!b.empty().try_grow(1), "no room left for new work");
        assert!(
            !b.empty_response().try_grow_response(1),
            "nor for responses"
        );
        drop(c);
        assert!(b.empty().try_grow(70));
        assert_eq!(b.inner.gauge.get(), 0);
    }

    #[test]
    fn large_responses_leave_room_for_small_ones() {
        // 8 MiB: responses may hold 6, large ones (over 1 MiB each) 4 of those.
        let b = budget(8 << 20);
        let mut large: Vec<_> = (0..3).map(|_| b.empty_response()).collect();
        assert!(large[0].try_grow_response(1536 << 10));
        // Growing past 1 MiB moves all of a response's bytes among the large ones.
        assert!(large[1].try_grow_response(512 << 10));
        assert!(large[1].try_grow_response(1 << 20));
        assert!(
            !large[2].try_grow_response(1536 << 10),
            "a third large one would pass half the budget"
        );
        let small: Vec<_> = (0..20)
            .map(|_| {
                let mut c = b.empty_response();
                assert!(c.try_grow_response(100 << 10), "small answers still fit");
                c
            })
            .collect();
        // As a large response is written out (shrinks), its room comes back.
        large[0].shrink(1536 << 10);
        assert!(large[2].try_grow_response(1536 << 10));
        drop((large, small));
        assert_eq!(b.inner.large.load(Ordering::Relaxed), 0);
        assert_eq!(b.inner.responses.load(Ordering::Relaxed), 0);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn responses_may_fill_only_their_share() {
        let b = budget(800);
        let mut r = b.empty_response();
        assert!(r.try_grow_response(600));
        assert!(
            !b.empty_response().try_grow_response(1),
            "the last quarter is kept for other work"
        );
        let mut other = b.empty();
        assert!(other.try_grow(100));
        drop(r);
        assert!(
            b.empty_response().try_grow_response(600),
            "the share is given back"
        );
    }

    #[test]
    fn a_response_is_charged_while_instances_fill_the_room_for_new_work() {
        let b = budget(800);
        let mut instances = b.empty();
        assert!(instances.try_grow(700));
        assert!(!b.empty().try_grow(1), "no new work");
        let mut r = b.empty_response();
        assert!(r.try_grow_response(100), "the headroom takes the response");
        assert!(!r.try_grow_response(1), "but not past the whole budget");
        assert_eq!(b.inner.responses.load(Ordering::Relaxed), 100);
        drop(r);
        assert_eq!(b.inner.responses.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn an_instance_waits_for_room_until_its_deadline() {
        let b = budget(800);
        let mut held = b.empty();
        assert!(held.try_grow(690));
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(
            b.charge_waiting(20, soon).await.is_none(),
            "no room, and nobody gives any back"
        );
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                b.charge_waiting(20, Instant::now() + Duration::from_secs(5))
                    .await
                    .map(|c| c.bytes())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.expect("joins"), Some(20));
    }

    #[tokio::test]
    async fn a_charged_body_releases_when_taken_and_runs_the_clock() {
        use http_body_util::BodyExt;
        let b = budget(1 << 20);
        let mut c = b.empty();
        assert!(c.try_grow(200_000));
        let clock = ResponseClock::default();
        let body = ChargedBody::new(
            Bytes::from(vec![7u8; 200_000]),
            c,
            Some((clock.clone(), Duration::from_secs(30))),
        );
        assert!(
            clock.deadline().is_none(),
            "not started before the first poll"
        );
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data").len(), CHUNK);
        assert!(clock.deadline().is_some_and(|d| d > Instant::now()));
        assert_eq!(b.used(), 200_000, "held while the rest is not taken");
        let mut total = CHUNK;
        while let Some(frame) = body.frame().await {
            total += frame.expect("data").into_data().expect("data").len();
        }
        assert_eq!(total, 200_000);
        assert_eq!(b.used(), 0);
        assert!(clock.deadline().is_none());
    }

    #[test]
    fn a_dropped_body_releases_its_charge() {
        let b = budget(1000);
        let mut c = b.empty();
        assert!(c.try_grow(500));
        drop(ChargedBody::new(Bytes::from_static(b"x"), c, None));
        assert_eq!(b.used(), 0);
    }
}
