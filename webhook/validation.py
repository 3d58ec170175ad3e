"""The validating side: an MLflowSetting being created or updated is judged by the same parser
that reads settings for injection (one parser, one verdict), and refused when another setting
already claims its group in that namespace, naming that object. The CRD's schema and CEL rules
stay the floor when the webhook is down (its failurePolicy is Ignore)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook import KIND
from webhook.settings.index import SettingsIndex
from webhook.settings.model import SettingError, parse_setting


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str = ""


def judge_setting(obj: Any, namespace: str, index: SettingsIndex) -> Verdict:
    if isinstance(obj, dict):  # the request's namespace is the object's
        meta = obj.get("metadata")
        obj = {
            **obj,
            "metadata": {**(meta if isinstance(meta, dict) else {}), "namespace": namespace},
        }
    try:
        setting = parse_setting(obj, namespace, index.secret_names)
    except SettingError as e:
        return Verdict(False, str(e))
    others = index.claimants(setting.namespace, setting.group_key) - {setting.ref}
    if others:
        what = (
            f"namespace {setting.namespace} has a setting with no group already"
            if setting.group is None
            else f"group {setting.group!r} is already claimed in namespace {setting.namespace}"
        )
        return Verdict(
            False,
            f"{KIND} {setting.ref}: spec.group: {what} by {', '.join(sorted(others))}; change "
            "that one instead, or delete it first",
        )
    return Verdict(True)
