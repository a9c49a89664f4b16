//! Service cluster IPs, as kube-apiserver's allocator hands them out: from the service CIDR
//! (10.96.0.0/12, kube's default; 10.96.0.1 is the `kubernetes` Service's), one per Service,
//! never two Services the same.
//!
//! Each allocated IP is a store key (`/registry/ranges/serviceips/{ip}` holding
//! `{namespace}/{name}`) claimed in the same transaction as the Service's create, so two
//! creates can never take one IP. Deleting a Service leaves its key; an allocation that meets
//! a key whose Service is gone (or holds another IP) takes it over, as kube's repair loop
//! would free it.

use std::net::Ipv4Addr;

use raft_store::{Compare, Op, RangeRequest, StoreNode};
use rand::Rng;
use serde_json::{json, Value};

use crate::api_error::{ApiError, ApiResult, FieldCause, Subject};
use crate::kinds::ResourceKind;

/// The service CIDR: 10.96.0.0/12.
const BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const PREFIX: u32 = 12;
/// Where the allocation keys live.
const PREFIX_KEY: &str = "/registry/ranges/serviceips/";
/// Random picks before giving up (the range has a million addresses).
const ATTEMPTS: usize = 64;

fn size() -> u32 {
    1 << (32 - PREFIX)
}

/// Whether `ip` is in the service CIDR (network and broadcast addresses excluded).
pub fn in_range(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    n > BASE && n < BASE + size() - 1
}

/// The `kubernetes` Service's address: the first of the range.
pub fn api_server_ip() -> Ipv4Addr {
    Ipv4Addr::from(BASE + 1)
}

fn key(ip: Ipv4Addr) -> String {
    format!("{PREFIX_KEY}{ip}")
}

/// What a Service's create adds to its transaction to hold its IP.
#[derive(Debug, Default)]
pub struct Claim {
    pub compare: Vec<Compare>,
    pub ops: Vec<Op>,
}

/// Whether a Service of this spec gets a cluster IP (not headless, not ExternalName).
fn wants_ip(spec: &Value) -> bool {
    spec.get("type").and_then(Value::as_str) != Some("ExternalName")
        && spec.get("clusterIP").and_then(Value::as_str) != Some("None")
}

/// Picks the IP of the Service `svc` about to be created in `ns` (the one it asks for, or a
/// free one), writes it into `spec.clusterIP`/`clusterIPs`, and returns what the create's
/// transaction must compare and put. 422 for an address outside the range or taken.
pub async fn claim(node: &StoreNode, kind: &ResourceKind, ns: &str, svc: &mut Value) -> ApiResult<Claim> {
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(Claim::default()) };
    if !wants_ip(&Value::Object(spec.clone())) {
        return Ok(Claim::default());
    }
    let owner = format!("{ns}/{name}");
    let invalid = |ip: &str, why: &str| ApiError::Invalid {
        subject: Subject::of(kind, name.clone()),
        causes: vec![FieldCause::invalid("spec.clusterIPs[0]", ip, why.to_string())],
    };
    let asked = spec.get("clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty()).map(String::from);
    let claim = match asked {
        Some(ip) => {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| invalid(&ip, "must be a valid IP address"))?;
            if !in_range(parsed) {
                return Err(invalid(&ip, "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"));
            }
            match free(node, parsed).await? {
                Some(compare) => (parsed, compare),
                None => {
                    return Err(invalid(&ip, &format!("failed to allocate IP {ip}: provided IP is already allocated")))
                }
            }
        }
        None => {
            let mut found = None;
            for _ in 0..ATTEMPTS {
                let offset = rand::thread_rng().gen_range(2..size() - 1);
                let ip = Ipv4Addr::from(BASE + offset);
                if let Some(compare) = free(node, ip).await? {
                    found = Some((ip, compare));
                    break;
                }
            }
            found.ok_or_else(|| ApiError::InternalError("failed to allocate a service IP: range is full".into()))?
        }
    };
    let (ip, compare) = claim;
    spec.insert("clusterIP".into(), json!(ip.to_string()));
    spec.insert("clusterIPs".into(), json!([ip.to_string()]));
    Ok(Claim { compare: vec![compare], ops: vec![Op::put(key(ip), owner.into_bytes())] })
}

/// The compare that keeps `ip` free until the create commits, if it is free: its key is
/// absent, or its Service is gone or holds another IP (then the key may be taken over).
async fn free(node: &StoreNode, ip: Ipv4Addr) -> ApiResult<Option<Compare>> {
    let Some(held) = node.range(RangeRequest::key(key(ip)), true).await?.kvs.pop() else {
        return Ok(Some(Compare::absent(key(ip))));
    };
    let owner = String::from_utf8_lossy(&held.value).to_string();
    let Some((ns, name)) = owner.split_once('/') else { return Ok(None) };
    let svc_key = format!("/registry/core/services/{ns}/{name}");
    let still_held = match node.range(RangeRequest::key(svc_key), true).await?.kvs.pop() {
        None => false,
        Some(svc) => {
            let svc: Value = serde_json::from_slice(&svc.value).unwrap_or(Value::Null);
            svc.pointer("/spec/clusterIP").and_then(Value::as_str) == Some(&ip.to_string())
        }
    };
    Ok((!still_held).then(|| Compare::mod_revision_is(key(ip), held.mod_revision)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_kubes_default() {
        assert!(in_range("10.96.0.10".parse().unwrap()));
        assert!(in_range("10.111.255.254".parse().unwrap()));
        assert!(!in_range("10.96.0.0".parse().unwrap()));
        assert!(!in_range("10.112.0.1".parse().unwrap()));
        assert_eq!(api_server_ip().to_string(), "10.96.0.1");
    }
}
