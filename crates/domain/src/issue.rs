//! One problem found in an input, with where it is: the unit of every refusal.

/// One problem found in a resource, with a JSON-pointer location when one is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// JSON pointer into the submitted resource (`/entry/0/resource/name`), empty for the root.
    pub location: String,
    /// What is wrong, in words fit for the client that sent it.
    pub message: String,
}

impl Issue {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
        }
    }
}
