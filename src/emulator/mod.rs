//! A faithful local Live Station for tests, the demo and benchmarks.
