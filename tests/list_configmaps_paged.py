"""Lists the configmaps of a namespace that a label selector selects with the Python
`kubernetes` client, two per page, following continue tokens; prints one line per page:
the names on it, space-separated (an empty line for an empty page).

Usage: list_configmaps_paged.py KUBECONFIG NAMESPACE SELECTOR (run by tests/kubectl_selectors.rs)."""

import sys

from kubernetes import client, config

config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
token = None
while True:
    page = v1.list_namespaced_config_map(sys.argv[2], label_selector=sys.argv[3], limit=2, _continue=token)
    print(" ".join(item.metadata.name for item in page.items), flush=True)
    token = page.metadata._continue
    if not token:
        break
