//! OAuth error codes (RFC 6749 §4.1.2.1 and §5.2, RFC 8693 §2.2.2, OIDC Core §3.1.2.6).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    LoginRequired,
    InvalidToken,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::LoginRequired => "login_required",
            Self::InvalidToken => "invalid_token",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
    pub fn request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
}

impl From<portcullis_store::StoreError> for OAuthError {
    fn from(e: portcullis_store::StoreError) -> Self {
        match e {
            portcullis_store::StoreError::Unavailable(d) => {
                tracing::error!(error = %d, "storage unavailable");
                Self::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the server is temporarily unavailable",
                )
            }
            other => {
                tracing::error!(error = %other, "storage error in the authorization server");
                Self::new(
                    ErrorCode::ServerError,
                    "the server could not complete the request",
                )
            }
        }
    }
}
