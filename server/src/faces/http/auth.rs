//! Tokens over HTTP: `Authorization: Bearer SECRET`, or `?access_token=SECRET` where a
//! header cannot be set (the browser's `EventSource`). 401 without a known token, 403 with
//! one that lacks the role.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::access::auth::{Role, Tokens};

/// What a group of routes needs.
#[derive(Clone)]
pub(super) struct Guard {
    pub(super) tokens: Arc<Tokens>,
    pub(super) role: Role,
}

/// Lets a request through only if its token (or, without one, the anonymous roles) has
/// the guard's role.
pub(super) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let secret = secret(&request);
    let roles = match &secret {
        None => guard.tokens.anonymous(),
        Some(secret) => match guard.tokens.check(secret.as_bytes()) {
            Some((_, roles)) => roles,
            None => return refuse(StatusCode::UNAUTHORIZED, "no token has this secret"),
        },
    };
    if roles.has(guard.role) {
        return next.run(request).await;
    }
    let status = if secret.is_some() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let text = format!("this needs a token with the {} role", guard.role.name());
    refuse(status, &text)
}

fn secret(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|s| s.trim().to_string());
    }
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "access_token")
        .map(|(_, value)| value.into_owned())
}

fn refuse(status: StatusCode, text: &str) -> Response {
    let mut response = super::error(status, text);
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
    }
    response
}
