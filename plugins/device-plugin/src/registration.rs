//! Registration with the kubelet: the plugin calls `Registration/Register` on the kubelet's
//! socket, naming its own socket (relative to the kubelet's device plugin directory) and
//! the resource it serves.

use std::path::Path;

use tonic::Request;

use crate::api::registration_client::RegistrationClient;
use crate::api::{DevicePluginOptions, RegisterRequest};
use crate::{uds, Error, API_VERSION};

/// Builds the `RegisterRequest` for a plugin serving `resource_name` on `plugin_socket`.
/// The endpoint is the socket's file name: the kubelet resolves it in its plugin directory.
pub fn register_request(plugin_socket: &Path, resource_name: &str) -> Result<RegisterRequest, Error> {
    let endpoint = plugin_socket
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| Error::Endpoint(plugin_socket.to_path_buf()))?;
    Ok(RegisterRequest {
        version: API_VERSION.to_string(),
        endpoint: endpoint.to_string(),
        resource_name: resource_name.to_string(),
        // Must match what the plugin answers to GetDevicePluginOptions.
        options: Some(DevicePluginOptions::default()),
    })
}

/// Registers the plugin serving `resource_name` on `plugin_socket` with the kubelet whose
/// registration socket is `kubelet_socket`. The plugin should already be serving: the
/// kubelet dials it back right after accepting. A kubelet refusal is [`Error::Rejected`].
pub async fn register(kubelet_socket: &Path, plugin_socket: &Path, resource_name: &str) -> Result<(), Error> {
    let request = register_request(plugin_socket, resource_name)?;
    let mut client = RegistrationClient::new(uds::connect(kubelet_socket).await?);
    client.register(Request::new(request)).await?;
    tracing::info!(resource_name, kubelet = %kubelet_socket.display(), "registered with kubelet");
    Ok(())
}
