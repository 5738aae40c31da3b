//! Commands the stat server does not answer itself. An embedding program (spud-host)
//! registers a `Control` to answer words of its own (`jobs`, `pause`, ...) on the same
//! connections; without one, those words stay `unknown_command`, as in the original.

/// Answers some command words on the server's connections.
pub trait Control: Send + Sync {
    /// The (lowercase) command words it answers.
    fn commands(&self) -> &[&'static str];

    /// Answers `command args`: reply lines (each sent as `OK <line>`, then `OK done`), or
    /// an error, sent as `ERR <code> <text>`.
    fn call(&self, command: &str, args: &str) -> Result<Vec<String>, ControlError>;

    /// A JSON view for the HTTP API (`jobs`, `plugins`); None when it has no such view.
    fn view(&self, _what: &str) -> Option<serde_json::Value> {
        None
    }
}

/// An error answer to a control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// The error code (`not_found`, `busy`, ...).
    pub code: &'static str,
    /// One line saying what is wrong.
    pub text: String,
}

impl ControlError {
    /// An error with a code and a text.
    pub fn new(code: &'static str, text: impl Into<String>) -> ControlError {
        ControlError {
            code,
            text: text.into().replace(['\r', '\n'], " "),
        }
    }
}
