//! A small CRI v1 client, as kubelet talks to containerd: gRPC over a unix socket.
//! The API types come from k8s-cri (generated from the CRI protobufs); this file only
//! connects and wraps the calls the e2e run makes, each with one context line.

use anyhow::{Context, Result};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// Cheap to clone: both clients share one channel.
#[derive(Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI socket at `socket` (the URI is required by tonic, not used).
    pub async fn connect(socket: &Path) -> Result<CriClient> {
        let socket: PathBuf = socket.to_path_buf();
        let channel = tonic::transport::Endpoint::try_from("http://[::1]:1")?
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .context("connecting to the CRI socket")?;
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    pub async fn version(&mut self) -> Result<cri::VersionResponse> {
        Ok(self
            .runtime
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .context("CRI Version")?
            .into_inner())
    }

    pub async fn pull_image(
        &mut self,
        image: &str,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String> {
        let request = cri::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config: None,
        };
        Ok(self
            .images
            .pull_image(request)
            .await
            .with_context(|| format!("CRI PullImage {image}"))?
            .into_inner()
            .image_ref)
    }

    pub async fn image_status(&mut self, image: &str) -> Result<Option<cri::Image>> {
        let request = cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self
            .images
            .image_status(request)
            .await
            .with_context(|| format!("CRI ImageStatus {image}"))?
            .into_inner()
            .image)
    }

    pub async fn run_pod_sandbox(&mut self, config: &cri::PodSandboxConfig) -> Result<String> {
        let request = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        Ok(self
            .runtime
            .run_pod_sandbox(request)
            .await
            .context("CRI RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id)
    }

    /// The sandbox's verbose status: containerd puts its `pid` in `info["info"]`.
    pub async fn pod_sandbox_pid(&mut self, pod: &str) -> Result<u32> {
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: true,
        };
        let status = self
            .runtime
            .pod_sandbox_status(request)
            .await
            .context("CRI PodSandboxStatus")?
            .into_inner();
        info_pid(&status.info)
    }

    pub async fn stop_pod_sandbox(&mut self, pod: &str) -> Result<()> {
        self.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await
            .context("CRI StopPodSandbox")?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, pod: &str) -> Result<()> {
        self.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await
            .context("CRI RemovePodSandbox")?;
        Ok(())
    }

    pub async fn list_pod_sandboxes(&mut self) -> Result<Vec<cri::PodSandbox>> {
        Ok(self
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .context("CRI ListPodSandbox")?
            .into_inner()
            .items)
    }

    pub async fn create_container(
        &mut self,
        pod: &str,
        config: cri::ContainerConfig,
        sandbox: &cri::PodSandboxConfig,
    ) -> Result<String> {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        };
        Ok(self
            .runtime
            .create_container(request)
            .await
            .context("CRI CreateContainer")?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<()> {
        self.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .context("CRI StartContainer")?;
        Ok(())
    }

    pub async fn stop_container(&mut self, id: &str, timeout_s: i64) -> Result<()> {
        self.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_s,
            })
            .await
            .context("CRI StopContainer")?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> Result<()> {
        self.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .context("CRI RemoveContainer")?;
        Ok(())
    }

    pub async fn container_status(
        &mut self,
        id: &str,
    ) -> Result<(cri::ContainerStatus, Option<u32>)> {
        let request = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let response = self
            .runtime
            .container_status(request)
            .await
            .context("CRI ContainerStatus")?
            .into_inner();
        let pid = info_pid(&response.info).ok();
        Ok((
            response.status.context("ContainerStatus has no status")?,
            pid,
        ))
    }

    pub async fn list_containers(&mut self) -> Result<Vec<cri::Container>> {
        Ok(self
            .runtime
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .context("CRI ListContainers")?
            .into_inner()
            .containers)
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

/// containerd's verbose info: a JSON document under "info" with the task's `pid`.
fn info_pid(info: &std::collections::HashMap<String, String>) -> Result<u32> {
    let json: serde_json::Value =
        serde_json::from_str(info.get("info").context("no verbose info")?)?;
    let pid = json["pid"]
        .as_u64()
        .filter(|pid| *pid > 0)
        .context("verbose info has no pid")?;
    Ok(pid as u32)
}
