//! A CRI v1 client over containerd's unix socket (the `k8s-cri` crate's tonic clients): the
//! calls the pod workers, the kubelet endpoint and `agent reset` make, each with a deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::{
    ContainerConfig, ContainerState, ContainerStatus, PodSandbox, PodSandboxConfig, PodSandboxState, PodSandboxStatus,
};

/// How long one ordinary CRI call may take (RunPodSandbox sets up networking: allow more).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A CRI call that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("CRI {call}: {status}")]
    Call { call: &'static str, status: Box<tonic::Status> },
}

impl Error {
    /// Whether the runtime says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Call { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to one runtime; cheap to clone.
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

fn failed(call: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |status| Error::Call { call, status: Box::new(status) }
}

impl Cri {
    /// Connects to the runtime serving on `socket`.
    pub async fn connect(socket: &Path) -> Result<Cri> {
        let path = socket.to_path_buf();
        // The URI is a placeholder: every connection goes to the socket.
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|source| Error::Connect { socket: socket.to_path_buf(), source })?;
        Ok(Cri { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) })
    }

    /// The runtime's name and version, e.g. "containerd 1.6.20".
    pub async fn version(&self) -> Result<String> {
        let response = self
            .runtime
            .clone()
            .version(request(cri::VersionRequest { version: "v1".into() }))
            .await
            .map_err(failed("Version"))?
            .into_inner();
        Ok(format!("{} {}", response.runtime_name, response.runtime_version))
    }

    /// Why the runtime's pod network is not ready, or `None` when it is. containerd loads the
    /// CNI config the agent writes a moment after it appears; a sandbox made before then fails
    /// ("cni plugin not initialized"), so kubelet waits for this condition and so do we.
    pub async fn network_not_ready(&self) -> Result<Option<String>> {
        let response = self
            .runtime
            .clone()
            .status(request(cri::StatusRequest { verbose: false }))
            .await
            .map_err(failed("Status"))?
            .into_inner();
        let conditions = response.status.map(|s| s.conditions).unwrap_or_default();
        Ok(conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady" && !c.status)
            .map(|c| format!("NetworkReady=false reason:{} message:{}", c.reason, c.message)))
    }

    /// Whether `image` is in the runtime's store; its id when it is.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        let spec = cri::ImageSpec { image: image.into(), ..Default::default() };
        let response = self
            .images
            .clone()
            .image_status(request(cri::ImageStatusRequest { image: Some(spec), verbose: false }))
            .await
            .map_err(failed("ImageStatus"))?
            .into_inner();
        Ok(response.image.map(|i| i.id))
    }

    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String> {
        let message = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        let response = self.runtime.clone().run_pod_sandbox(request(message)).await.map_err(failed("RunPodSandbox"))?;
        Ok(response.into_inner().pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let message = cri::StopPodSandboxRequest { pod_sandbox_id: id.into() };
        self.runtime.clone().stop_pod_sandbox(request(message)).await.map_err(failed("StopPodSandbox"))?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let message = cri::RemovePodSandboxRequest { pod_sandbox_id: id.into() };
        self.runtime.clone().remove_pod_sandbox(request(message)).await.map_err(failed("RemovePodSandbox"))?;
        Ok(())
    }

    /// Stops a sandbox (its containers with it), then removes it; the removal is tried even
    /// if the stop failed (containerd stops what it removes), and its outcome is the answer.
    pub async fn stop_and_remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let _ = self.stop_pod_sandbox(id).await;
        self.remove_pod_sandbox(id).await
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> Result<Option<PodSandboxStatus>> {
        let message = cri::PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false };
        let response =
            self.runtime.clone().pod_sandbox_status(request(message)).await.map_err(failed("PodSandboxStatus"))?;
        Ok(response.into_inner().status)
    }

    /// Sandboxes, all or those whose labels include `labels`.
    pub async fn list_pod_sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<PodSandbox>> {
        let filter = cri::PodSandboxFilter { label_selector: labels, ..Default::default() };
        let message = cri::ListPodSandboxRequest { filter: Some(filter) };
        let response =
            self.runtime.clone().list_pod_sandbox(request(message)).await.map_err(failed("ListPodSandbox"))?;
        Ok(response.into_inner().items)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        let message = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let response =
            self.runtime.clone().create_container(request(message)).await.map_err(failed("CreateContainer"))?;
        Ok(response.into_inner().container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let message = cri::StartContainerRequest { container_id: id.into() };
        self.runtime.clone().start_container(request(message)).await.map_err(failed("StartContainer"))?;
        Ok(())
    }

    /// Stops a container: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let message = cri::StopContainerRequest { container_id: id.into(), timeout: grace.as_secs() as i64 };
        let mut call = tonic::Request::new(message);
        call.set_timeout(CALL_TIMEOUT + grace);
        self.runtime.clone().stop_container(call).await.map_err(failed("StopContainer"))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let message = cri::RemoveContainerRequest { container_id: id.into() };
        self.runtime.clone().remove_container(request(message)).await.map_err(failed("RemoveContainer"))?;
        Ok(())
    }

    /// The containers of one sandbox (any state).
    pub async fn list_containers(&self, sandbox_id: &str) -> Result<Vec<cri::Container>> {
        let filter = cri::ContainerFilter { pod_sandbox_id: sandbox_id.into(), ..Default::default() };
        let message = cri::ListContainersRequest { filter: Some(filter) };
        let response =
            self.runtime.clone().list_containers(request(message)).await.map_err(failed("ListContainers"))?;
        Ok(response.into_inner().containers)
    }

    pub async fn container_status(&self, id: &str) -> Result<Option<ContainerStatus>> {
        let message = cri::ContainerStatusRequest { container_id: id.into(), verbose: false };
        let response =
            self.runtime.clone().container_status(request(message)).await.map_err(failed("ContainerStatus"))?;
        Ok(response.into_inner().status)
    }

    /// Runs `cmd` in a container and waits for it (exec probes, preStop hooks).
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> Result<cri::ExecSyncResponse> {
        let message = cri::ExecSyncRequest { container_id: id.into(), cmd, timeout: timeout.as_secs().max(1) as i64 };
        let mut call = tonic::Request::new(message);
        call.set_timeout(timeout + Duration::from_secs(5));
        let response = self.runtime.clone().exec_sync(call).await.map_err(failed("ExecSync"))?;
        Ok(response.into_inner())
    }

    /// The runtime's streaming URL for an exec session.
    pub async fn exec(&self, message: cri::ExecRequest) -> Result<String> {
        let response = self.runtime.clone().exec(request(message)).await.map_err(failed("Exec"))?;
        Ok(response.into_inner().url)
    }

    /// The runtime's streaming URL for attaching to a container's stdio.
    pub async fn attach(&self, message: cri::AttachRequest) -> Result<String> {
        let response = self.runtime.clone().attach(request(message)).await.map_err(failed("Attach"))?;
        Ok(response.into_inner().url)
    }

    /// The runtime's streaming URL for forwarding ports into a sandbox.
    pub async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> Result<String> {
        let message = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.into(), port: ports };
        let response = self.runtime.clone().port_forward(request(message)).await.map_err(failed("PortForward"))?;
        Ok(response.into_inner().url)
    }

    /// CPU and memory figures of every container.
    pub async fn list_container_stats(&self) -> Result<Vec<cri::ContainerStats>> {
        let message = cri::ListContainerStatsRequest { filter: None };
        let response =
            self.runtime.clone().list_container_stats(request(message)).await.map_err(failed("ListContainerStats"))?;
        Ok(response.into_inner().stats)
    }
}

#[cfg(test)]
impl Cri {
    /// A client whose every call fails: for tests of code that only sometimes calls CRI.
    pub fn lazy_for_tests() -> Cri {
        let channel =
            Endpoint::from_static("http://localhost").connect_with_connector_lazy(tower::service_fn(|_: Uri| async {
                Err::<TokioIo<tokio::net::UnixStream>, _>(std::io::Error::other("no runtime in this test"))
            }));
        Cri { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) }
    }
}
