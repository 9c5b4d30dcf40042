//! Certificates by ACME (RFC 8555): the account, the orders, the challenge answers, renewal.
//!
//! Owns the background task that orders and renews every `[[certificate]]` with `acme`
//! (`client`), the answers the listeners give to the ACME server's checks while an order is
//! open (`challenge`: HTTP-01 tokens for the `http` listener, TLS-ALPN-01 certificates for the
//! `https` listener), the files in the `[acme]` storage (`store`) and the ACME metrics
//! (`metrics`). Does not own serving a certificate: a new one is written as one file and the
//! certificate watcher of the https front (`proxy::tls::watch`) swaps it in, the same hot swap
//! as for files renewed by hand. The JWS, nonces (with their `badNonce` retries) and order
//! objects are instant-acme's.
//!
//! A dead or refusing ACME server costs only this task its progress: every attempt is bounded
//! in time, failures back off (`[acme] retry_initial_ms` doubling to `retry_max_ms`), and the
//! listeners serve the stored certificate, or the placeholder, meanwhile.

pub mod challenge;
pub mod client;
pub mod metrics;
pub mod store;

pub use client::spawn;
