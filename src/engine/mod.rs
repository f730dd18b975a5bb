//! The engine: observe, desire, act, follow.
