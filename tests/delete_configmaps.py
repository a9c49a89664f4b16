"""Deletes configmaps in `default` with the Python `kubernetes` client: NAME with
preconditions that do not hold (a wrong uid, then a wrong resourceVersion), printing
`CODE REASON MESSAGE` for each refusal; then with preconditions that hold, printing the
returned `Status` as `STATUS NAME KIND`; then the configmaps labelled app=py as a collection,
printing the names still labelled so afterwards (an empty line).

Usage: delete_configmaps.py KUBECONFIG NAME (run by tests/kubectl_delete.rs)."""

import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
name = sys.argv[2]
current = v1.read_namespaced_config_map(name, "default")
for preconditions in [client.V1Preconditions(uid="wrong"), client.V1Preconditions(resource_version="1")]:
    try:
        v1.delete_namespaced_config_map(name, "default", body=client.V1DeleteOptions(preconditions=preconditions))
        print("deleted", flush=True)
    except ApiException as e:
        status = json.loads(e.body)
        print(e.status, status["reason"], status["message"], flush=True)
holds = client.V1Preconditions(uid=current.metadata.uid, resource_version=current.metadata.resource_version)
status = v1.delete_namespaced_config_map(name, "default", body=client.V1DeleteOptions(preconditions=holds))
# Newer clients hand back the `Status` as a dict, older ones as a V1Status.
if not isinstance(status, dict):
    status = client.ApiClient().sanitize_for_serialization(status)
print(status["status"], status["details"]["name"], status["details"]["kind"], flush=True)
v1.delete_collection_namespaced_config_map("default", label_selector="app=py")
left = v1.list_namespaced_config_map("default", label_selector="app=py")
print(" ".join(item.metadata.name for item in left.items), flush=True)
