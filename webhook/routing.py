"""The webhook configuration's matchConditions, brought in line with this process's
configuration when a worker starts: the API server then sends exactly the pods `pods.route`
says are ours (webhookconfig.conditions), whatever podKinds and labels the install gave the
webhook (a Helm value, an edited ConfigMap), with no second copy of the rule in a template or
a manifest to regenerate by hand. Only the matchConditions of this project's two entries
change; the rest of the object (its caBundle, its selectors, anything an admin added) is kept,
and an update that loses a race is read again."""

from __future__ import annotations

import copy
import logging
from typing import Any

from webhook.config import Config
from webhook.kube import Api, ApiError, Conflict
from webhook.webhookconfig import MODELS_ENTRY, PODS_ENTRY, conditions

log = logging.getLogger(__name__)
PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"


def aligned(live: dict[str, Any], config: Config) -> dict[str, Any] | None:
    """`live` with the matchConditions the configuration routes by, or None if it has them."""
    new = copy.deepcopy(live)
    changed = False
    for hook in new.get("webhooks") or []:
        if hook.get("name") not in (MODELS_ENTRY, PODS_ENTRY):
            continue
        wanted = conditions(config, model=hook["name"] == MODELS_ENTRY)
        if hook.get("matchConditions") != wanted:
            hook["matchConditions"], changed = wanted, True
    return new if changed else None


def align(api: Api, config: Config, name: str) -> None:
    """Updates the webhook configuration `name`, if it routes otherwise than `config` says."""
    try:
        for _ in range(3):
            live = api.call("GET", PATH + name)
            if live is None:
                log.info("no MutatingWebhookConfiguration %s: nothing to align", name)
                return
            new = aligned(live, config)
            if new is None:
                return
            try:
                api.call("PUT", PATH + name, new)
            except Conflict:
                continue  # changed meanwhile (a certificate renewed): read it again
            log.warning(
                "MutatingWebhookConfiguration %s: matchConditions set from this configuration's "
                "podKinds and labels",
                name,
            )
            return
    except ApiError as e:
        log.warning(
            "cannot align MutatingWebhookConfiguration %s with this configuration (%s): pods of "
            "the configured podKinds may not be sent (the webhook's identity needs get and "
            "update on it: manifests/base/rbac.yaml)",
            name,
            e,
        )
