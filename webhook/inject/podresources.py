"""Our init container within a pod's own budget (pod-level resources, `spec.resources`).

A pod that sets its own requests must cover, for each resource it names, the requests of every
init container plus those of the native sidecars started before it (Kubernetes' aggregate of a
pod's requests); the API server refuses it otherwise. The model copy runs before the model
server, on the pod's budget, so our init container asks for no more than is left there. Its
limits are not touched: Kubernetes bounds only regular containers' limits by the pod's.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Any

from webhook.settings import rules


def fit_pod_requests(spec: dict[str, Any], init: dict[str, Any]) -> None:
    """Lowers `init`'s requests (it is in spec.initContainers) to what the pod's own requests
    leave beside the sidecars started before it."""
    own = spec.get("resources") or {}
    # Kubernetes defaults a pod's requests to its limits.
    budget = {**(own.get("limits") or {}), **(own.get("requests") or {})}
    if not budget:
        return
    inits: list[dict[str, Any]] = spec["initContainers"]
    before = [c for c in inits[: inits.index(init)] if c.get("restartPolicy") == "Always"]
    resources = init.setdefault("resources", {})
    for name, total in budget.items():
        left = _amount(total)
        wanted = _request(init, name)
        if left is None or wanted is None:
            continue  # not a quantity: the API server refuses the pod by itself
        left -= sum((_request(c, name) or Decimal(0) for c in before), Decimal(0))
        if wanted > left:
            resources.setdefault("requests", {})[name] = _text(max(left, Decimal(0)))


def _request(container: dict[str, Any], name: str) -> Decimal | None:
    """A container's request (defaulted to its limit, as Kubernetes does)."""
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        amount = (resources.get(kind) or {}).get(name)
        if amount is not None:
            return _amount(amount)
    return None


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return rules.quantity(text) if rules.compiled(rules.RESOURCE_QUANTITY).match(text) else None


def _text(amount: Decimal) -> str:
    """A quantity no larger than `amount`: whole (in the largest binary unit that divides it, as
    memory is usually written), or in thousandths or billionths."""
    if amount == amount.to_integral_value():
        whole, suffix = int(amount), ""
        for unit in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"):
            if whole == 0 or whole % 1024:
                break
            whole, suffix = whole // 1024, unit
        return f"{whole}{suffix}"
    if amount * 1000 == (amount * 1000).to_integral_value():
        return f"{int(amount * 1000)}m"
    return f"{int((amount * 10**9).to_integral_value(ROUND_FLOOR))}n"
