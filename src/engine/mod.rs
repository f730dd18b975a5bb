//! The engine: observe, desire, act, follow (PRODUCT.md §1–2).
//!
//! - [`decide`]: the pure decision rule and occurrence state machine.
//! - [`retry`]: backoff timing.

pub mod decide;
pub mod retry;
