//! Configuration: the TOML contract of PRODUCT.md §4, parsed once into typed values.
