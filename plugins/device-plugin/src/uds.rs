//! gRPC over unix sockets: [`bind`] for servers, [`connect`] for clients.

use std::path::Path;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::Error;

/// Binds a unix socket at `path`, replacing a stale socket file left by an earlier run,
/// and returns the connection stream for `Server::serve_with_incoming`.
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListenerStream, Error> {
    let socket_error = |source| Error::Socket { path: path.to_path_buf(), source };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(socket_error(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(socket_error)?;
    Ok(UnixListenerStream::new(listener))
}

/// Opens a gRPC channel to the server listening on the unix socket at `path`.
pub async fn connect(path: &Path) -> Result<Channel, Error> {
    let path = path.to_path_buf();
    // tonic wants a URI; the connector ignores it and dials the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await?;
    Ok(channel)
}
