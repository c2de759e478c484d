//! What an operation answers: a status and, except for 204, a JSON body. Errors
//! carry CommonSchemas.yaml's `Error` object, `{message, traceId}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// Digits of hex in a `traceId` (the yaml's example has 16).
const TRACE_ID_BYTES: usize = 8;

/// An answer before it becomes an HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<serde_json::Value>,
}

/// Operations return the answer in both arms, so that refusals can leave with `?`.
pub type Outcome = Result<Reply, Reply>;

impl Reply {
    pub fn ok(body: serde_json::Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: Some(body),
        }
    }

    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }

    /// An `Error` object with a fresh traceId.
    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        let trace_id = hex::encode(rand::random::<[u8; TRACE_ID_BYTES]>());
        Reply {
            status,
            body: Some(serde_json::json!({"message": message.into(), "traceId": trace_id})),
        }
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = self.body.map(|b| b.to_string()).unwrap_or_default();
        let has_body = !body.is_empty();
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = self.status;
        if has_body {
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        r
    }
}

/// A status the `http` crate has no constant for (420), or any other.
pub fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
