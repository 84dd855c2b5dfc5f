//! Helpers shared by the project-level tests.
