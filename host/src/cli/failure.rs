//! How a command fails: an error and the exit status it maps to.

/// Exit status: 0 success, 1 runtime error, 2 usage error, 3 nodes without data.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    /// A runtime error, except a policy's refusal of its settings (`--set`
    /// or the cluster file's `[policy]` table), which is the operator's
    /// usage error wherever it is found.
    fn from(error: anyhow::Error) -> Self {
        let bad_settings = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref(),
                Some(crate::model::PolicyError::BadConfig(_))
            ) || cause.is::<crate::model::UnknownSettings>()
        });
        Failure {
            code: if bad_settings { 2 } else { 1 },
            error,
        }
    }
}

impl From<crate::query::QueryError> for Failure {
    fn from(error: crate::query::QueryError) -> Self {
        use crate::query::QueryError;
        match error {
            QueryError::BadRequest(why) => Failure::usage(anyhow::anyhow!(why)),
            QueryError::NoData { message, .. } => Failure {
                code: 3,
                error: anyhow::anyhow!(message),
            },
            QueryError::Failed(error) => Failure::from(error),
        }
    }
}

impl Failure {
    pub fn usage(error: anyhow::Error) -> Self {
        Failure { code: 2, error }
    }

    /// Exit with `code`, the command having said why on stdout (`check`):
    /// nothing more is printed.
    pub fn reported(code: i32) -> Self {
        Failure {
            code,
            error: anyhow::Error::new(Reported),
        }
    }

    /// Whether the command has already said why.
    pub fn is_reported(&self) -> bool {
        self.error.is::<Reported>()
    }
}

/// The marker of [`Failure::reported`].
#[derive(Debug, thiserror::Error)]
#[error("reported on stdout")]
struct Reported;
