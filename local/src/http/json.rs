//! JSON response bodies, each ending with a newline (so that `curl` leaves
//! the shell's prompt on a line of its own and JSON-lines tools read them).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A value answered as `application/json`, followed by a newline.
#[derive(Debug, Clone)]
pub(super) struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(128);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => {
                body.push(b'\n');
                (
                    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    body,
                )
                    .into_response()
            }
            Err(e) => {
                tracing::error!("cannot serialize a response: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot serialize the response: {e}\n"),
                )
                    .into_response()
            }
        }
    }
}
