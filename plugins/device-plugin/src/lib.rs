//! An example Kubernetes device plugin speaking the kubelet device plugin API `v1beta1`
//! over gRPC on unix sockets. It advertises fake devices, so it runs anywhere.
//!
//! Crate map:
//! - [`api`]: the generated `v1beta1` messages, clients and servers (`proto/api.proto`).
//! - [`plugin`]: [`FakeDevicePlugin`], the `DevicePlugin` service: N fake devices whose
//!   health can be changed at run time, streamed by `ListAndWatch`.
//! - [`registration`]: [`register`], the client call that announces the plugin to the kubelet.
//! - [`uds`]: binding and dialing gRPC over unix sockets.
//!
//! The usual flow: [`FakeDevicePlugin::serve`] on a socket in [`DEVICE_PLUGIN_DIR`], then
//! [`register`] it with the kubelet at [`KUBELET_SOCKET`].

pub mod plugin;
pub mod registration;
pub mod uds;

/// Generated code for `proto/api.proto` (package `v1beta1`).
pub mod api {
    tonic::include_proto!("v1beta1");
}

pub use plugin::FakeDevicePlugin;
pub use registration::register;

use std::path::PathBuf;

/// The API version sent in `RegisterRequest.version`.
pub const API_VERSION: &str = "v1beta1";
/// `Device.health` of a usable device.
pub const HEALTHY: &str = "Healthy";
/// `Device.health` of a device that must not be allocated.
pub const UNHEALTHY: &str = "Unhealthy";
/// The directory where the kubelet looks for device plugin sockets.
pub const DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";
/// The kubelet's registration socket.
pub const KUBELET_SOCKET: &str = "/var/lib/kubelet/device-plugins/kubelet.sock";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or removing a unix socket failed.
    #[error("socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The plugin socket path has no UTF-8 file name to register as endpoint.
    #[error("socket path {0} has no UTF-8 file name")]
    Endpoint(PathBuf),
    /// Connecting or serving failed at the transport level.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The kubelet answered `Register` with an error.
    #[error("registration rejected: {0}")]
    Rejected(#[from] tonic::Status),
    /// `set_health` named a device the plugin does not have.
    #[error("unknown device {0}")]
    UnknownDevice(String),
}
