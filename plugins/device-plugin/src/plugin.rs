//! The `DevicePlugin` service: [`FakeDevicePlugin`] advertises N fake devices of one
//! resource name, streams their health through `ListAndWatch`, and answers `Allocate`
//! with an environment variable naming the allocated devices.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::api::device_plugin_server::{DevicePlugin, DevicePluginServer};
use crate::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse, ContainerPreferredAllocationResponse, Device,
    DevicePluginOptions, Empty, ListAndWatchResponse, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse,
};
use crate::{uds, Error, HEALTHY, UNHEALTHY};

/// The environment variable `Allocate` sets: the allocated device ids, comma separated.
pub const ENV_VAR: &str = "FLOTILLA_FAKE_GPUS";

/// A device plugin with `count` fake devices `dev-0` .. `dev-{count-1}`, all healthy at
/// first. Clones share state: keep one as a handle (for [`set_health`](Self::set_health))
/// and [`serve`](Self::serve) another.
#[derive(Clone)]
pub struct FakeDevicePlugin {
    resource_name: String,
    /// The current device list; every `ListAndWatch` stream watches it.
    devices: watch::Sender<Vec<Device>>,
    /// Set once on shutdown, to end the `ListAndWatch` streams so connections can drain.
    stopped: watch::Sender<bool>,
}

impl FakeDevicePlugin {
    /// A plugin for `resource_name` (e.g. `flotilla.dev/fake-gpu`) with `count` devices.
    pub fn new(resource_name: impl Into<String>, count: usize) -> Self {
        let devices = (0..count)
            .map(|i| Device { id: format!("dev-{i}"), health: HEALTHY.to_string(), topology: None })
            .collect();
        Self {
            resource_name: resource_name.into(),
            devices: watch::Sender::new(devices),
            stopped: watch::Sender::new(false),
        }
    }

    /// The resource name the devices are advertised under.
    pub fn resource_name(&self) -> &str {
        &self.resource_name
    }

    /// A snapshot of the devices and their health.
    pub fn devices(&self) -> Vec<Device> {
        self.devices.borrow().clone()
    }

    /// Marks device `id` healthy or not; open `ListAndWatch` streams get the new list
    /// if this changed anything.
    pub fn set_health(&self, id: &str, healthy: bool) -> Result<(), Error> {
        let health = if healthy { HEALTHY } else { UNHEALTHY };
        let mut known = false;
        self.devices.send_if_modified(|devices| {
            let Some(device) = devices.iter_mut().find(|d| d.id == id) else {
                return false;
            };
            known = true;
            if device.health == health {
                return false;
            }
            device.health = health.to_string();
            true
        });
        if known {
            tracing::info!(id, health, "device health set");
            Ok(())
        } else {
            Err(Error::UnknownDevice(id.to_string()))
        }
    }

    /// Binds the unix socket at `socket` now (so it exists when this returns) and gives
    /// back the future that serves the plugin on it until `shutdown` completes. On
    /// shutdown the `ListAndWatch` streams end and the socket file is removed; the plugin
    /// cannot be served again after that. Call it inside a tokio runtime.
    pub fn serve(
        self,
        socket: &Path,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<impl Future<Output = Result<(), Error>> + Send + 'static, Error> {
        let incoming = uds::bind(socket)?;
        let socket = socket.to_path_buf();
        let stopped = self.stopped.clone();
        let stop = async move {
            shutdown.await;
            stopped.send_replace(true);
        };
        Ok(async move {
            tracing::info!(resource_name = %self.resource_name, socket = %socket.display(), "serving device plugin");
            let served = Server::builder()
                .add_service(DevicePluginServer::new(self))
                .serve_with_incoming_shutdown(incoming, stop)
                .await;
            let removed = std::fs::remove_file(&socket);
            served?;
            removed.map_err(|source| Error::Socket { path: socket, source })
        })
    }

    /// Checks that every id names one of this plugin's devices.
    fn check_known(&self, ids: &[String]) -> Result<(), Status> {
        let devices = self.devices.borrow();
        match ids.iter().find(|id| !devices.iter().any(|d| &d.id == *id)) {
            Some(id) => {
                Err(Status::invalid_argument(format!("unknown device {id} for resource {}", self.resource_name)))
            }
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl DevicePlugin for FakeDevicePlugin {
    type ListAndWatchStream = ReceiverStream<Result<ListAndWatchResponse, Status>>;

    async fn get_device_plugin_options(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        // No PreStartContainer needed, GetPreferredAllocation not advertised.
        Ok(Response::new(DevicePluginOptions::default()))
    }

    /// Sends the device list now and again after every change, until the client hangs
    /// up or the plugin shuts down.
    async fn list_and_watch(&self, _request: Request<Empty>) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut devices = self.devices.subscribe();
        let mut stopped = self.stopped.subscribe();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let list = devices.borrow_and_update().clone();
                let response = ListAndWatchResponse { devices: list };
                if tx.send(Ok(response)).await.is_err() {
                    return; // the client hung up
                }
                tokio::select! {
                    changed = devices.changed() => if changed.is_err() { return },
                    _ = stopped.wait_for(|stopped| *stopped) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Prefers the required devices, then the available ones in the given order.
    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|req| {
                let size = usize::try_from(req.allocation_size).unwrap_or(0);
                let mut ids = req.must_include_device_i_ds;
                for id in req.available_device_i_ds {
                    if ids.len() >= size {
                        break;
                    }
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                ContainerPreferredAllocationResponse { device_i_ds: ids }
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse { container_responses }))
    }

    /// Answers each container with [`ENV_VAR`] set to its device ids; any unknown id
    /// fails the whole request with `INVALID_ARGUMENT`.
    async fn allocate(&self, request: Request<AllocateRequest>) -> Result<Response<AllocateResponse>, Status> {
        let mut container_responses = Vec::new();
        for req in request.into_inner().container_requests {
            self.check_known(&req.devices_ids)?;
            let envs = HashMap::from([(ENV_VAR.to_string(), req.devices_ids.join(","))]);
            container_responses.push(ContainerAllocateResponse { envs, ..Default::default() });
        }
        tracing::debug!(containers = container_responses.len(), "allocated");
        Ok(Response::new(AllocateResponse { container_responses }))
    }

    async fn pre_start_container(
        &self,
        _request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
