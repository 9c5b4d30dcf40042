//! The ACME families: orders by certificate and result, and challenges answered by type.
//! Certificate expiry is not here: ACME certificates are `[[certificate]]`s, so
//! `vipgate_tls_certificate_not_after_seconds` covers them (the placeholder's too, until the
//! first is issued).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::telemetry::metrics::{header, Esc, Registry};

/// One ACME certificate's orders; the label is its first name.
#[derive(Debug, Default)]
pub struct OrderStats {
    pub issued: AtomicU64,
    pub failed: AtomicU64,
    /// When the next attempt is due (Unix time): renewal time or the end of a back-off.
    pub next_attempt: AtomicU64,
}

static ORDERS: Registry<String, OrderStats> = Registry::new();
/// Challenge answers given: HTTP-01 on the http listener, TLS-ALPN-01 handshakes.
static ANSWERED: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

pub fn orders(name: &str) -> Arc<OrderStats> {
    ORDERS.get_or(&name.to_string(), OrderStats::default)
}

/// An HTTP-01 (`false`) or TLS-ALPN-01 (`true`) check answered.
pub fn answered(tls_alpn: bool) {
    ANSWERED[usize::from(tls_alpn)].fetch_add(1, Ordering::Relaxed);
}

/// The ACME families, once an ACME certificate exists in the configuration.
pub fn render(out: &mut String) {
    let all = ORDERS.entries();
    if all.is_empty() {
        return;
    }
    header(
        out,
        "vipgate_acme_orders_total",
        "counter",
        "ACME orders by certificate (its first name) and result: issued, or failed (logged with the server's problem document, retried with back-off).",
    );
    for (name, s) in &all {
        for (result, v) in [("issued", &s.issued), ("failed", &s.failed)] {
            let _ = writeln!(
                out,
                "vipgate_acme_orders_total{{certificate=\"{}\",result=\"{result}\"}} {}",
                Esc(name),
                v.load(Ordering::Relaxed)
            );
        }
    }
    header(
        out,
        "vipgate_acme_next_attempt_seconds",
        "gauge",
        "When the next order for an ACME certificate is due (Unix time): its renewal time, or the end of a back-off after a failure.",
    );
    for (name, s) in &all {
        let _ = writeln!(
            out,
            "vipgate_acme_next_attempt_seconds{{certificate=\"{}\"}} {}",
            Esc(name),
            s.next_attempt.load(Ordering::Relaxed)
        );
    }
    header(
        out,
        "vipgate_acme_challenges_answered_total",
        "counter",
        "ACME validation requests answered by this node, by challenge type.",
    );
    for (kind, v) in ["http-01", "tls-alpn-01"].iter().zip(&ANSWERED) {
        let _ = writeln!(
            out,
            "vipgate_acme_challenges_answered_total{{type=\"{kind}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
}
