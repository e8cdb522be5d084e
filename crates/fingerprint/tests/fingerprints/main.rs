//! Integration tests on real capture bytes: positives in both orientations,
//! the cross-matrix, prefix sweeps and randomized robustness.

mod fixtures;
mod matrix;
mod positive;
mod random;
mod support;
mod sweep;
