//! The HTTPS front of the simulators of JSON and SOAP services: accept on a
//! loopback listener, the TLS handshake with the test CA's certificate, then
//! HTTP/1.1 with each request handed to the simulator's `answer`. One loop for
//! all of them, so each simulator file holds only its service's rules.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use openssl::ssl::SslAcceptor;
use tokio::net::TcpListener;

use crate::net::Conn;

/// How long a simulator waits for a client (the handshake, a request's head).
pub const SIM_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until the task is aborted: every request goes to
/// `answer` with the simulator's `state`.
pub async fn serve<S, F, Fut>(
    listener: TcpListener,
    acceptor: Arc<SslAcceptor>,
    state: Arc<S>,
    answer: F,
) where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, state, answer) = (acceptor.clone(), state.clone(), answer.clone());
        tokio::spawn(async move {
            let mut conn = Conn::new(crate::net::conn::Stream::Plain(tcp), peer, SIM_TIMEOUT);
            if conn.accept_tls(&acceptor).await.is_err() {
                return;
            }
            let Some(stream) = conn.into_stream() else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let reply = answer(state.clone(), req);
                async move { Ok::<_, std::convert::Infallible>(reply.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(SIM_TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
