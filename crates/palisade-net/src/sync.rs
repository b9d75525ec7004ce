//! Anti-entropy sync protocol (request-response). Protocol-level hard limits live here.

/// Hard cap on feed heads per response page, whatever the config says.
pub const MAX_HEADS_PER_PAGE: usize = 4096;
/// Hard cap on records per response page.
pub const MAX_RECORDS_PER_PAGE: usize = 1024;
/// Hard cap on one response's encoded size (bytes).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
