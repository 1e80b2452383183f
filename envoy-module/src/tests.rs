//! The module's tests.
