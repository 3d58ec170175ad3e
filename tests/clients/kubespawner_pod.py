"""Prints the pod JupyterHub's KubeSpawner makes for a user's notebook server, as JSON, built by
KubeSpawner's own code (`get_pod_manifest`, offline: nothing is contacted). Run by the
virtualenvs of tests/clients/install.sh (one KubeSpawner line each):

    python kubespawner_pod.py USER NAMESPACE [GROUP]

With GROUP, the pod carries PrimeHub's two labels as PrimeHub's spawner adds them in its
`pre_spawn_start` (`extra_labels`): `primehub.io/user` and `primehub.io/group`, each `escaped-`
and escapism with lowercase letters and digits safe, `-` as escape character, lower-cased.
"""

import asyncio
import json
import string
import sys

import escapism
from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner


class User:
    def __init__(self, name: str) -> None:
        self.name, self.id, self.url = name, 1, f"/user/{name}/"
        self.escaped_name = name


def primehub_label(name: str) -> str:
    safe = set(string.ascii_lowercase + string.digits)
    return "escaped-" + escapism.escape(name, safe=safe, escape_char="-").lower()


async def main(user: str, namespace: str, group: str | None) -> None:
    spawner = KubeSpawner(_mock=True, user=User(user), namespace=namespace)
    if group is not None:
        spawner.extra_labels = {
            "primehub.io/user": primehub_label(user),
            "primehub.io/group": primehub_label(group),
        }
    pod = await spawner.get_pod_manifest()
    print(json.dumps(ApiClient().sanitize_for_serialization(pod)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
