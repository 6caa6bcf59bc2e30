//! TODO: app
