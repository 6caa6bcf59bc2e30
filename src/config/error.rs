//! Why configuration loading failed; every message names the file, field path or env var.

use std::path::PathBuf;

/// A configuration error that stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field (or the env var that set it) has an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// Field path such as `configuration.port`, or the env var name such as `AMPLITUDE_PORT`.
        field: String,
        /// What is wrong; never contains a secret.
        message: String,
    },
    /// A config file named explicitly does not exist.
    #[error("config file {}: not found", path.display())]
    FileNotFound {
        /// The file.
        path: PathBuf,
    },
    /// A config file could not be read.
    #[error("config file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file's extension is not `.yaml`, `.yml` or `.json`.
    #[error("config file {}: unsupported extension; use .yaml, .yml or .json", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// A config file is not valid YAML/JSON.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// No file, no `AMPLITUDE_*` project variables and no Flagsmith environments: nothing to serve.
    #[error(
        "no configuration: {} does not exist and AMPLITUDE_API_KEY, AMPLITUDE_SECRET_KEY, \
         AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY and FLAGSMITH_ENVIRONMENT_KEY_PAIRS are not set",
        path.display()
    )]
    NoConfig {
        /// The default file that was looked for.
        path: PathBuf,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
