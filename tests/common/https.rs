//! HTTPS servers inside an end-to-end test (webhooks, extension API servers, fake kubelets):
//! actix-web on 127.0.0.1 on a thread of its own, with certificates made by `api_gateway::pki`;
//! stopped when dropped.

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use api_gateway::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A fresh CA and a serving certificate it signed for `localhost`, `127.0.0.1` and `names`.
/// (`api_gateway::pki` writes them to a temp dir, removed once they are read.)
pub fn serving_pki(names: &[&str]) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    api_gateway::pki::load_or_create(dir.path(), &names).unwrap()
}

/// TLS serving `pki`'s certificate; client certificates are required and must chain to
/// `client_ca` (PEM) when it is given, and are not asked for otherwise.
pub fn server_config(pki: &Pki, client_ca: Option<&str>) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain =
        CertificateDer::pem_slice_iter(pki.apiserver.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.apiserver.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.unwrap().with_client_cert_verifier(verifier)
        }
        None => builder.unwrap().with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).unwrap()
}

/// An actix-web server with `tls` on ports of 127.0.0.1. Handlers find a verified client
/// certificate's user as `api_gateway::authn::ClientCertUser` connection data, and the port a
/// request came in on in `req.app_config().local_addr()`.
pub struct HttpsServer {
    /// Where it listens, one port per listener.
    pub ports: Vec<u16>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Serves what `routes` configures on one port the system picks.
    pub fn start(tls: rustls::ServerConfig, routes: impl Fn(&mut web::ServiceConfig) + Send + Clone + 'static) -> Self {
        HttpsServer::listen(vec![TcpListener::bind("127.0.0.1:0").unwrap()], tls, routes)
    }

    /// Serves what `routes` configures on one port, with a serving certificate of a CA of its
    /// own (client certificates optional, as the API server takes them); returns the server
    /// and that CA (PEM), for a `caBundle`.
    pub fn with_own_ca(routes: impl Fn(&mut web::ServiceConfig) + Send + Clone + 'static) -> (Self, String) {
        let pki = serving_pki(&[]);
        let server = HttpsServer::start(api_gateway::tls::server_config(&pki).unwrap(), routes);
        (server, pki.ca.cert_pem)
    }

    /// Serves what `routes` configures on all of `listeners` at once.
    pub fn listen(
        listeners: Vec<TcpListener>,
        tls: rustls::ServerConfig,
        routes: impl Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    ) -> Self {
        let ports = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let mut server = HttpServer::new(move || App::new().configure(routes.clone()))
                    .on_connect(api_gateway::authn::on_connect)
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1);
                for listener in listeners {
                    server = server.listen_rustls_0_23(listener, tls.clone()).unwrap();
                }
                let server = server.run();
                tx.send(server.handle()).unwrap();
                server.await.unwrap();
            })
        });
        HttpsServer { ports, handle: rx.recv().unwrap(), thread: Some(thread) }
    }

    /// The (first) port it listens on.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// Stops serving, dropping open connections; returns once its ports are closed.
    pub fn stop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            // A second panic while a failed test unwinds would abort the run.
            assert!(joined.is_ok() || std::thread::panicking(), "the HTTPS server's thread panicked");
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
