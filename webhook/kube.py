"""Raw JSON calls to the API server through the Kubernetes client: objects stay plain dicts, so
fields this code does not know survive a read-modify-write."""

from __future__ import annotations

import json
from typing import Any


class Conflict(Exception):
    pass


class Api:
    """Raw JSON reads and writes through the kubernetes client (no typed models)."""

    def __init__(self, api_client: Any) -> None:
        self.client = api_client

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        """The object as JSON; None for a GET of what does not exist; Conflict on 409."""
        from kubernetes.client.rest import ApiException

        try:
            resp = self.client.call_api(
                path,
                method,
                body=body,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
            )
        except ApiException as e:
            if e.status == 404 and method == "GET":
                return None
            if e.status == 409:
                raise Conflict(path) from None
            raise
        result: dict[str, Any] = json.loads(resp.data)
        return result
