//! The listeners: HTTPS (HTTP/1.1 over rustls) for the API, and plain HTTP
//! that only redirects to it. Each connection runs on its own task with a
//! time limit on its TLS handshake and on reading a request's head; the number
//! of connections is bounded, so a flood costs a bounded amount of memory.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::PeerAddr;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A TLS handshake or a request's head must arrive within this.
const PATIENCE: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until the task is dropped.
pub async fn https(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors: let connections end before accepting more.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(PATIENCE, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer}: {e}");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(PeerAddr(peer));
                router.clone().oneshot(request)
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(PATIENCE)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// Answers every request on `listener` with a 308 to the same path over
/// HTTPS on `https_port`.
pub async fn redirect(listener: TcpListener, https_port: u16) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |request: Request<Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(redirect_response(&request, https_port))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(PATIENCE)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn redirect_response<B>(request: &Request<B>, https_port: u16) -> Response<String> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_name);
    let Some(host) = host else {
        let mut response = Response::new("a Host header is needed\n".to_owned());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The host of a `Host` header without its port, if it is a plain name or
/// address (anything else could turn the redirect elsewhere).
fn host_name(host: &str) -> Option<&str> {
    let name = if let Some(rest) = host.strip_prefix('[') {
        &host[..rest.find(']')? + 2]
    } else {
        host.split(':').next()?
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-[]:".contains(c);
    (!name.is_empty() && name.len() <= 253 && name.chars().all(allowed)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: &str, path: &str, port: u16) -> (StatusCode, Option<String>) {
        let request = Request::builder()
            .uri(path)
            .header(header::HOST, host)
            .body(())
            .unwrap();
        let response = redirect_response(&request, port);
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        (response.status(), location)
    }

    #[test]
    fn plain_http_is_sent_to_the_same_place_over_https() {
        assert_eq!(
            location("door.local", "/api/v1/status?x=1", 443),
            (
                StatusCode::PERMANENT_REDIRECT,
                Some("https://door.local/api/v1/status?x=1".to_owned())
            )
        );
        assert_eq!(
            location("127.0.0.1:8080", "/", 8443),
            (
                StatusCode::PERMANENT_REDIRECT,
                Some("https://127.0.0.1:8443/".to_owned())
            )
        );
        assert_eq!(
            location("[::1]:80", "/", 443).1.as_deref(),
            Some("https://[::1]/")
        );
    }

    #[test]
    fn a_host_that_would_send_the_client_elsewhere_is_refused() {
        for host in ["evil.example/x", "a@b", "", "x y"] {
            assert_eq!(
                location(host, "/", 443).0,
                StatusCode::BAD_REQUEST,
                "{host:?}"
            );
        }
    }
}
