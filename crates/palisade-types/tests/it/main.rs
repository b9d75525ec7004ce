//! Integration tests of the wire format: golden vectors, round trips, rejections.

mod golden;
mod rejection;
mod roundtrip;
mod strategies;
