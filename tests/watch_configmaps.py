"""Watches configmaps in `default` after a resourceVersion with the Python `kubernetes`
client and prints `TYPE NAME` per event; the stream ends after 5 seconds.

Usage: watch_configmaps.py KUBECONFIG RESOURCE_VERSION (run by tests/kubectl_watch.rs)."""

import sys

from kubernetes import client, config, watch

config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
events = watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=sys.argv[2], timeout_seconds=5)
for event in events:
    print(event["type"], event["object"].metadata.name, flush=True)
