//! Drives the fake device plugin and the registration client over real unix sockets in a
//! temp dir with the generated gRPC clients. Stream items are awaited under a deadline.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_plugin::api::device_plugin_client::DevicePluginClient;
use device_plugin::api::registration_server::{Registration, RegistrationServer};
use device_plugin::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty, ListAndWatchResponse,
    PreferredAllocationRequest, RegisterRequest,
};
use device_plugin::plugin::ENV_VAR;
use device_plugin::{register, uds, Error, FakeDevicePlugin, API_VERSION, HEALTHY, UNHEALTHY};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tonic::codec::Streaming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

const RESOURCE: &str = "flotilla.dev/fake-gpu";
const DEADLINE: Duration = Duration::from_secs(10);

struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    plugin: FakeDevicePlugin,
    client: DevicePluginClient<Channel>,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), Error>>,
}

/// Serves a plugin with `count` devices on a fresh socket and connects a client to it.
async fn start(count: usize) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("fake-gpu.sock");
    let plugin = FakeDevicePlugin::new(RESOURCE, count);
    let (stop, stopped) = oneshot::channel::<()>();
    let serve = plugin
        .clone()
        .serve(&socket, async move {
            let _ = stopped.await;
        })
        .expect("bind");
    let served = tokio::spawn(serve);
    let client = DevicePluginClient::new(uds::connect(&socket).await.expect("connect"));
    Running { _dir: dir, socket, plugin, client, stop, served }
}

async fn list_and_watch(client: &mut DevicePluginClient<Channel>) -> Streaming<ListAndWatchResponse> {
    client.list_and_watch(Empty {}).await.expect("ListAndWatch").into_inner()
}

/// The next device list as (id, health) pairs, failing past the deadline.
async fn next_list(stream: &mut Streaming<ListAndWatchResponse>) -> Vec<(String, String)> {
    let message =
        timeout(DEADLINE, stream.message()).await.expect("deadline").expect("stream status").expect("stream ended");
    message.devices.into_iter().map(|d| (d.id, d.health)).collect()
}

fn allocate_request(containers: &[&[&str]]) -> AllocateRequest {
    AllocateRequest {
        container_requests: containers
            .iter()
            .map(|ids| ContainerAllocateRequest { devices_ids: ids.iter().map(|id| id.to_string()).collect() })
            .collect(),
    }
}

#[tokio::test]
async fn options_are_defaults() {
    let mut run = start(2).await;
    let options = run.client.get_device_plugin_options(Empty {}).await.expect("options");
    let options = options.into_inner();
    assert!(!options.pre_start_required);
    assert!(!options.get_preferred_allocation_available);
}

#[tokio::test]
async fn list_and_watch_streams_health_changes() {
    let mut run = start(3).await;
    let mut stream = list_and_watch(&mut run.client).await;
    let healthy = |id: &str| (id.to_string(), HEALTHY.to_string());
    assert_eq!(next_list(&mut stream).await, vec![healthy("dev-0"), healthy("dev-1"), healthy("dev-2")]);

    run.plugin.set_health("dev-1", false).expect("set_health");
    let list = next_list(&mut stream).await;
    assert_eq!(list[1], ("dev-1".to_string(), UNHEALTHY.to_string()));
    assert_eq!(list[0], healthy("dev-0"));

    run.plugin.set_health("dev-1", true).expect("set_health");
    assert_eq!(next_list(&mut stream).await[1], healthy("dev-1"));

    assert!(matches!(run.plugin.set_health("dev-9", false), Err(Error::UnknownDevice(id)) if id == "dev-9"));
}

#[tokio::test]
async fn allocate_sets_env_var_per_container() {
    let mut run = start(4).await;
    let response =
        run.client.allocate(allocate_request(&[&["dev-0", "dev-1"], &["dev-3"]])).await.expect("allocate").into_inner();
    let envs: Vec<_> = response.container_responses.iter().map(|c| c.envs.get(ENV_VAR).map(String::as_str)).collect();
    assert_eq!(envs, vec![Some("dev-0,dev-1"), Some("dev-3")]);
}

#[tokio::test]
async fn allocate_rejects_unknown_device() {
    let mut run = start(2).await;
    let status = run
        .client
        .allocate(allocate_request(&[&["dev-0"], &["dev-0", "dev-7"]]))
        .await
        .expect_err("unknown device must fail");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("dev-7"), "{}", status.message());
}

#[tokio::test]
async fn preferred_allocation_keeps_required_devices_first() {
    let mut run = start(4).await;
    let request = PreferredAllocationRequest {
        container_requests: vec![ContainerPreferredAllocationRequest {
            available_device_i_ds: ["dev-0", "dev-1", "dev-2"].map(String::from).to_vec(),
            must_include_device_i_ds: vec!["dev-2".to_string()],
            allocation_size: 2,
        }],
    };
    let response = run.client.get_preferred_allocation(request).await.expect("preferred");
    let ids = &response.into_inner().container_responses[0].device_i_ds;
    assert_eq!(ids, &["dev-2", "dev-0"]);
}

#[tokio::test]
async fn shutdown_ends_streams_and_removes_socket() {
    let mut run = start(1).await;
    let mut stream = list_and_watch(&mut run.client).await;
    next_list(&mut stream).await;

    run.stop.send(()).expect("server still running");
    let end = timeout(DEADLINE, stream.message()).await.expect("deadline");
    assert!(matches!(end, Ok(None)), "stream should end cleanly: {end:?}");
    drop(run.client);
    let served = timeout(DEADLINE, run.served).await.expect("deadline").expect("join");
    served.expect("serve");
    assert!(!run.socket.exists());
}

/// A kubelet stand-in: records each Register request, refuses a resource name twice.
#[derive(Clone, Default)]
struct FakeKubelet {
    requests: Arc<Mutex<Vec<RegisterRequest>>>,
}

#[tonic::async_trait]
impl Registration for FakeKubelet {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        let mut requests = self.requests.lock().expect("lock");
        if requests.iter().any(|r| r.resource_name == request.resource_name) {
            return Err(Status::already_exists(format!("{} is registered", request.resource_name)));
        }
        requests.push(request);
        Ok(Response::new(Empty {}))
    }
}

fn serve_kubelet(socket: &Path) -> FakeKubelet {
    let kubelet = FakeKubelet::default();
    let incoming = uds::bind(socket).expect("bind kubelet socket");
    let server = Server::builder().add_service(RegistrationServer::new(kubelet.clone()));
    tokio::spawn(server.serve_with_incoming(incoming));
    kubelet
}

#[tokio::test]
async fn register_sends_version_endpoint_and_resource() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet_socket = dir.path().join("kubelet.sock");
    let kubelet = serve_kubelet(&kubelet_socket);
    let plugin_socket = dir.path().join("fake-gpu.sock");

    timeout(DEADLINE, register(&kubelet_socket, &plugin_socket, RESOURCE)).await.expect("deadline").expect("register");

    let requests = kubelet.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].version, API_VERSION);
    assert_eq!(requests[0].endpoint, "fake-gpu.sock");
    assert_eq!(requests[0].resource_name, RESOURCE);
    assert_eq!(requests[0].options, Some(Default::default()));

    let again = timeout(DEADLINE, register(&kubelet_socket, &plugin_socket, RESOURCE)).await.expect("deadline");
    assert!(matches!(again, Err(Error::Rejected(s)) if s.code() == Code::AlreadyExists));
}
