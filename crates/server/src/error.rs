//! The one place where errors become HTTP.
//!
//! Every failure an admin or API caller sees is JSON `{"code": "...", "message": "..."}` with a
//! stable machine `code` and a human `message`. Internal details (database errors, corrupt rows)
//! are logged with a reference and never sent; the caller gets `internal_error` with that
//! reference instead, and the status is 503 when the database is unreachable.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code (`not_found`, `invalid_request`, `conflict`, …).
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn internal(context: &str, detail: impl std::fmt::Display) -> Self {
        let reference = reference();
        tracing::error!(%reference, context, error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the server could not complete the request (reference {reference})"),
        )
    }
}

fn reference() -> String {
    let mut b = [0u8; 6];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    portcullis_crypto::secrets::to_hex(&b)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict { code, message } => {
                Self::new(StatusCode::CONFLICT, code, message)
            }
            StoreError::Unavailable(detail) => {
                tracing::error!(error = %detail, "storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry later",
                )
            }
            StoreError::Corrupt(detail) => Self::internal("storage", detail),
        }
    }
}

impl From<crate::checkpoints::CheckpointError> for ApiError {
    fn from(e: crate::checkpoints::CheckpointError) -> Self {
        use crate::checkpoints::CheckpointError as E;
        match e {
            E::Store(e) => e.into(),
            E::Broken(_) => Self::new(StatusCode::CONFLICT, "audit_chain_broken", e.to_string()),
            E::Keys(_) | E::Sign(_) => Self::internal("audit checkpoint", e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
