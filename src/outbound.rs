//! Calls out of the filter through an Envoy cluster (a profile's confirmation step, e.g.
//! Azure's ARM check, and the fleet's rate limit service), behind a trait so that they
//! are tested natively against the mock.

use crate::shared::SharedStore;

/// An outbound HTTP call through an Envoy cluster.
#[derive(Debug)]
pub struct Call<'a> {
    pub cluster: &'a str,
    /// Pseudo-headers included (`:method`, `:path`, `:authority`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// The answer to a [`Call`]: no status when the call failed or timed out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// `Retry-After` in whole seconds (0 when absent or an HTTP date).
    pub fn retry_after(&self) -> u64 {
        self.retry_after.as_deref().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }
}

/// A unary gRPC call through an Envoy cluster.
#[derive(Debug)]
pub struct GrpcCall<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    /// The request message, serialised.
    pub message: &'a [u8],
    pub timeout_ms: u64,
}

/// What the checks need from the host besides shared data: calls out and their answers.
pub trait Outbound: SharedStore {
    /// Dispatches `call`; the id its answer will carry, `None` when it cannot be sent.
    fn dispatch(&self, call: &Call<'_>) -> Option<u32>;
    /// The answer of the call being reported, its body read up to `body_size` bytes.
    fn answer(&self, body_size: usize) -> Answer;
}

/// gRPC calls out (the fleet's rate limit service) and their answers.
pub trait GrpcOutbound {
    /// Dispatches `call`; the id its answer will carry, `None` when it cannot be sent.
    fn dispatch_grpc(&self, call: &GrpcCall<'_>) -> Option<u32>;
    /// The response message of the gRPC call being reported, `size` bytes.
    fn grpc_answer(&self, size: usize) -> Vec<u8>;
}
