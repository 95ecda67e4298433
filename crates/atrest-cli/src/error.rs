//! The CLI's errors: a server that refused (its status, code and message), a server
//! that could not be reached, or a local problem (a file, a setting, a local command).
//! Each has its own exit status, so scripts can tell them apart.

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A local problem; the message says what to fix.
    #[error("{0}")]
    Local(String),
    /// The server could not be reached (connection, TLS, timeout).
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why, with the causes.
        detail: String,
    },
    /// The server answered with an error.
    #[error("{status} {code}{}: {message}", inner.as_deref().map(|i| format!(" ({i})")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The AKV `innererror.code`, when there is one.
        inner: Option<String>,
        /// The server's message (what to do next).
        message: String,
    },
}

impl CliError {
    /// The process exit status: 1 local, 3 unreachable, 4 refused by the server (4xx),
    /// 5 failed on the server (5xx). (clap uses 2 for usage errors.)
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Local(_) => 1,
            CliError::Unreachable { .. } => 3,
            CliError::Refused { status, .. } if *status >= 500 => 5,
            CliError::Refused { .. } => 4,
        }
    }
}

impl From<String> for CliError {
    fn from(s: String) -> Self {
        CliError::Local(s)
    }
}

impl From<&str> for CliError {
    fn from(s: &str) -> Self {
        CliError::Local(s.to_string())
    }
}

/// Result of a command: what to print, or why it failed.
pub(crate) type CliResult<T = String> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::CliError;

    #[test]
    fn messages_and_exit_codes() {
        let e = CliError::Refused {
            status: 403,
            code: "Forbidden".into(),
            inner: Some("AccessDenied".into()),
            message: "grant get".into(),
        };
        assert_eq!(e.to_string(), "403 Forbidden (AccessDenied): grant get");
        assert_eq!(e.exit_code(), 4);
        let e =
            CliError::Refused { status: 503, code: "ServiceUnavailable".into(), inner: None, message: "retry".into() };
        assert_eq!((e.to_string().as_str(), e.exit_code()), ("503 ServiceUnavailable: retry", 5));
        assert_eq!(CliError::from("bad file").exit_code(), 1);
        assert_eq!(CliError::Unreachable { url: "u".into(), detail: "d".into() }.exit_code(), 3);
    }
}
