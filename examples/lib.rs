//! Runnable examples of Aqueduct: see the `[[example]]` targets in this package.
