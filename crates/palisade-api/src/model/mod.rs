//! Request and response bodies of the API, shared by the server and [`ApiClient`].
//!
//! Field names are the JSON names. Times are milliseconds since the Unix epoch (`*_ms`);
//! ids, author keys and fingerprints are 64 lowercase hex characters; digests are
//! `"<algorithm>:<hex>"`.
//!
//! [`ApiClient`]: crate::ApiClient

mod guard;
mod node;
mod records;

pub use guard::*;
pub use node::*;
pub use records::*;
