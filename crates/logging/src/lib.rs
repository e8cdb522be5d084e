//! Logging: the subscriber the binary installs (text or JSON on standard error, colours only on a
//! terminal), and rate limiting, so that nothing an attacker or a failing disk can repeat — a
//! malformed connection to the metrics listener, a write error — floods the journal.
//!
//! Two pieces:
//! - [`RateLimited`]: a small counter anyone with a repeated warning keeps next to it (the EVE
//!   writer, a capture thread): "may I log this now, and how many did I hold back since?".
//! - [`RateLimitLayer`]: the same limit applied to every log call site (INFO and above) of every
//!   crate, including the ones we do not own (and the metrics listener, which logs one warning per
//!   malformed HTTP connection). The first [`LOG_BURST`] events of a call site per [`LOG_INTERVAL`]
//!   pass; the rest are counted (`xferwatch_log_messages_suppressed_total{level}`) and summarised in
//!   one "N similar messages suppressed" line when the call site may log again (or, if it stays
//!   quiet, with the next event of any call site once its interval is over).
//!
//! DEBUG and TRACE are never limited: the operator asked for them. Limits use wall-clock time
//! (`Instant`), not packet time: they protect the log, not the detection.

use metrics::counter;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::FieldSet;
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{span, Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Events a call site may log per [`LOG_INTERVAL`] before the rest are suppressed.
pub const LOG_BURST: u32 = 5;
/// The rate-limit window of the logging layer.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Call sites the layer tracks. They are static code locations, so this is never reached in
/// practice; past it, a new call site is not limited (and nothing is lost).
pub const MAX_LIMITED_CALLSITES: usize = 4096;

/// A rate limit for one repeated message: at most `burst` per `interval`, and how many were held
/// back. Keep one next to the warning it limits:
///
/// ```
/// use std::time::{Duration, Instant};
/// use xferwatch_logging::RateLimited;
///
/// let mut write_errors = RateLimited::new(3, Duration::from_secs(10));
/// for _ in 0..100 {
///     if let Some(suppressed) = write_errors.should_log(Instant::now()) {
///         if suppressed > 0 {
///             eprintln!("({suppressed} similar warnings suppressed)");
///         }
///         eprintln!("warning: cannot write");
///     }
/// }
/// assert_eq!(write_errors.suppressed_total(), 97);
/// ```
///
/// Windows are fixed: the first message after a window has ended starts the next one. Nothing is
/// allocated; the caller passes the time, so tests need not sleep.
#[derive(Clone, Debug)]
pub struct RateLimited {
    burst: u32,
    interval: Duration,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
    suppressed_total: u64,
}

impl RateLimited {
    /// At most `burst` messages (at least 1) per `interval`.
    pub const fn new(burst: u32, interval: Duration) -> Self {
        RateLimited {
            burst: if burst == 0 { 1 } else { burst },
            interval,
            window_start: None,
            in_window: 0,
            suppressed: 0,
            suppressed_total: 0,
        }
    }

    fn window_over(&self, now: Instant) -> bool {
        self.window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval)
    }

    /// Whether to log a message now: `Some(n)` — log it, and say that `n` similar messages were
    /// suppressed since the last one logged (0: none); `None` — suppress it (it is counted).
    pub fn should_log(&mut self, now: Instant) -> Option<u64> {
        if self.window_over(now) {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.burst {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            self.suppressed_total += 1;
            None
        }
    }

    /// Messages suppressed in a window that is now over and not reported yet (no message came
    /// since to carry the count): `Some(n)` once, to be reported by the caller; else `None`.
    pub fn take_pending(&mut self, now: Instant) -> Option<u64> {
        if self.suppressed > 0 && self.window_over(now) {
            Some(std::mem::take(&mut self.suppressed))
        } else {
            None
        }
    }

    /// Every message suppressed since this limit was made.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }
}

/// A layer that rate-limits every call site of INFO and above, then hands what passes to `inner`
/// (the formatter). See the module header.
pub struct RateLimitLayer<L> {
    inner: L,
    burst: u32,
    interval: Duration,
    sites: Mutex<HashMap<Identifier, Site>>,
}

struct Site {
    meta: &'static Metadata<'static>,
    limit: RateLimited,
}

impl<L> RateLimitLayer<L> {
    /// At most `burst` events per call site per `interval` reach `inner`.
    pub fn new(inner: L, burst: u32, interval: Duration) -> Self {
        RateLimitLayer {
            inner,
            burst,
            interval,
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `meta`'s event passes now, and the summaries (call site, count) due now. The lock is
    /// released before anything else is called (a metric, the formatter), so nothing they might log
    /// can come back into it.
    fn decide(&self, meta: &'static Metadata<'static>, now: Instant) -> (bool, Vec<Summary>) {
        let mut due = Vec::new();
        let verdict = {
            // A poisoned lock only means a panic elsewhere while holding it; the map is still sound.
            let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
            for site in sites.values_mut() {
                if let Some(n) = site.limit.take_pending(now) {
                    due.push(Summary { meta: site.meta, n });
                }
            }
            let id = meta.callsite();
            if !sites.contains_key(&id) && sites.len() >= MAX_LIMITED_CALLSITES {
                Some(0)
            } else {
                sites
                    .entry(id)
                    .or_insert_with(|| Site {
                        meta,
                        limit: RateLimited::new(self.burst, self.interval),
                    })
                    .limit
                    .should_log(now)
            }
        };
        match verdict {
            Some(0) => (true, due),
            Some(n) => {
                due.push(Summary { meta, n });
                (true, due)
            }
            None => {
                counter!("xferwatch_log_messages_suppressed_total", "level" => level_name(meta.level()))
                    .increment(1);
                (false, due)
            }
        }
    }
}

struct Summary {
    meta: &'static Metadata<'static>,
    n: u64,
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The summary line's own call sites, one per limited level (it reports at the level of what it
/// summarises, so it passes the same filter).
struct SummaryCallsite(usize);

static SUMMARY_CALLSITES: [SummaryCallsite; 3] =
    [SummaryCallsite(0), SummaryCallsite(1), SummaryCallsite(2)];

const SUMMARY_FIELDS: &[&str] = &["message", "suppressed", "target", "site"];

macro_rules! summary_meta {
    ($i:expr, $level:expr) => {
        Metadata::new(
            "rate limit summary",
            "xferwatch_logging",
            $level,
            Some(file!()),
            Some(line!()),
            Some(module_path!()),
            FieldSet::new(SUMMARY_FIELDS, Identifier(&SUMMARY_CALLSITES[$i])),
            Kind::EVENT,
        )
    };
}

static SUMMARY_META: [Metadata<'static>; 3] = [
    summary_meta!(0, Level::ERROR),
    summary_meta!(1, Level::WARN),
    summary_meta!(2, Level::INFO),
];

impl Callsite for SummaryCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        &SUMMARY_META[self.0]
    }
}

fn summary_meta(level: &Level) -> &'static Metadata<'static> {
    match *level {
        Level::ERROR => &SUMMARY_META[0],
        Level::WARN => &SUMMARY_META[1],
        _ => &SUMMARY_META[2],
    }
}

impl<S, L> Layer<S> for RateLimitLayer<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(meta)
    }
    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(meta, ctx)
    }
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(id, values, ctx);
    }
    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(id, follows, ctx);
    }
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }
    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }
    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }
    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO {
            self.inner.on_event(event, ctx);
            return;
        }
        let (pass, due) = self.decide(meta, Instant::now());
        for s in due {
            let summary = summary_meta(s.meta.level());
            let message = format!(
                "{} similar messages suppressed (at most {} per {} s from one place)",
                s.n,
                self.burst,
                self.interval.as_secs_f64()
            );
            let site = format!(
                "{}:{}",
                s.meta.file().unwrap_or("?"),
                s.meta.line().unwrap_or(0)
            );
            let values: [Option<&dyn tracing::Value>; 4] = [
                Some(&message.as_str()),
                Some(&s.n),
                Some(&s.meta.target()),
                Some(&site.as_str()),
            ];
            let fields = summary.fields().value_set_all(&values);
            self.inner
                .on_event(&Event::new(summary, &fields), ctx.clone());
        }
        if pass {
            self.inner.on_event(event, ctx);
        }
    }
}

/// Installs the process's logger: `level` (an `EnvFilter` directive; `RUST_LOG` wins), text or
/// JSON lines (`json`) on standard error, ANSI colours only when standard error is a terminal (never into the journal or
/// a file), every call site rate-limited ([`LOG_BURST`] per [`LOG_INTERVAL`]). A second call
/// does nothing.
pub fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter, Registry};
    type Filtered = tracing_subscriber::layer::Layered<EnvFilter, Registry>;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::stderr().is_terminal();
    let base = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let format: Box<dyn Layer<Filtered> + Send + Sync> = if json {
        Box::new(base.json())
    } else {
        Box::new(base.with_target(false))
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(RateLimitLayer::new(format, LOG_BURST, LOG_INTERVAL))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn burst_then_suppressed_then_summary_in_the_next_window() {
        let t0 = Instant::now();
        let mut r = RateLimited::new(3, Duration::from_secs(10));
        let got: Vec<Option<u64>> = (0..10)
            .map(|i| r.should_log(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(got[..3], [Some(0), Some(0), Some(0)]);
        assert!(got[3..].iter().all(|g| g.is_none()));
        assert_eq!(r.suppressed_total(), 7);
        // Still inside the window: suppressed; nothing pending yet.
        assert_eq!(r.should_log(t0 + Duration::from_secs(9)), None);
        assert_eq!(r.take_pending(t0 + Duration::from_secs(9)), None);
        // Next window: the first message carries the count, once.
        assert_eq!(r.should_log(t0 + Duration::from_secs(10)), Some(8));
        assert_eq!(r.should_log(t0 + Duration::from_secs(10)), Some(0));
        assert_eq!(r.suppressed_total(), 8);
    }

    #[test]
    fn pending_count_is_reported_once_when_the_window_ends_quietly() {
        let t0 = Instant::now();
        let mut r = RateLimited::new(1, Duration::from_secs(1));
        assert_eq!(r.should_log(t0), Some(0));
        assert_eq!(r.should_log(t0), None);
        assert_eq!(r.should_log(t0), None);
        assert_eq!(r.take_pending(t0 + Duration::from_millis(999)), None);
        assert_eq!(r.take_pending(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(r.take_pending(t0 + Duration::from_secs(5)), None);
        assert_eq!(r.should_log(t0 + Duration::from_secs(5)), Some(0));
    }

    #[test]
    fn zero_burst_still_lets_one_through_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut r = RateLimited::new(0, Duration::from_secs(1));
        assert_eq!(r.should_log(t0), Some(0));
        assert_eq!(r.should_log(t0 - Duration::from_secs(50)), None);
        assert_eq!(r.should_log(t0 + Duration::from_secs(1)), Some(1));
    }

    /// A writer the formatter writes into, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let b = self.0.lock().unwrap();
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    fn subscriber(out: &Captured, interval: Duration) -> impl Subscriber + Send + Sync {
        use tracing_subscriber::layer::SubscriberExt;
        let out = out.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || out.clone());
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(RateLimitLayer::new(fmt, 2, interval))
    }

    #[test]
    fn layer_limits_each_call_site_and_summarises() {
        let out = Captured::default();
        let interval = Duration::from_millis(300);
        tracing::subscriber::with_default(subscriber(&out, interval), || {
            for i in 0..50 {
                tracing::warn!("noisy {i}");
            }
            // Another call site has its own allowance; DEBUG is never limited.
            tracing::warn!("other");
            for i in 0..5 {
                tracing::debug!("detail {i}");
            }
            std::thread::sleep(interval + Duration::from_millis(50));
            tracing::warn!("noisy again");
        });
        let lines = out.lines();
        let noisy = lines.iter().filter(|l| l.contains("noisy")).count();
        assert_eq!(noisy, 3, "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("other")));
        assert_eq!(lines.iter().filter(|l| l.contains("detail")).count(), 5);
        let summary: Vec<&String> = lines.iter().filter(|l| l.contains("suppressed")).collect();
        assert_eq!(summary.len(), 1, "{lines:#?}");
        assert!(
            summary[0].contains("48 similar messages suppressed"),
            "{}",
            summary[0]
        );
        assert!(summary[0].contains("WARN"), "{}", summary[0]);
        assert!(summary[0].contains("lib.rs:"), "{}", summary[0]);
        // The summary comes before the message that carried it.
        let at = |s: &str| lines.iter().position(|l| l.contains(s)).unwrap();
        assert!(at("48 similar") < at("noisy again"));
        assert_eq!(lines.len(), 2 + 1 + 5 + 1 + 1);
    }

    #[test]
    fn a_quiet_call_site_is_summarised_by_the_next_event_from_anywhere() {
        let out = Captured::default();
        let interval = Duration::from_millis(200);
        tracing::subscriber::with_default(subscriber(&out, interval), || {
            for _ in 0..10 {
                tracing::error!("disk full");
            }
            std::thread::sleep(interval + Duration::from_millis(50));
            tracing::info!("something else");
            tracing::info!("and again");
        });
        let lines = out.lines();
        assert_eq!(lines.len(), 2 + 1 + 2, "{lines:#?}");
        assert!(lines[2].contains("8 similar messages suppressed") && lines[2].contains("ERROR"));
        assert!(lines[3].contains("something else"));
    }
}
