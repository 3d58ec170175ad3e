"""`mlflow-webhook`: serve, preview, copy-artifacts, check, import-primehub, certs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from webhook import __version__
from webhook.brief import brief
from webhook.config import ConfigError, load_config
from webhook.files import FileProblem, read_text
from webhook.kube import SERVICE_ACCOUNT, ApiError, Credentials
from webhook.settings.sources import SourceError, read_file


class CliError(Exception):
    """Bad input to a command: one line to stderr, exit code 2."""


def _cluster_credentials(kubeconfig: Path | None) -> Credentials:
    """The credentials for the cluster, read once, before the workers start (they inherit
    them): what can be checked without calling the API server is checked here."""
    from webhook.kube import ConfigError, credentials

    try:
        creds = credentials(kubeconfig)
    except ConfigError as e:
        raise CliError(f"--cluster: {e}") from None
    if not creds.server:
        raise CliError(f"--kubeconfig {kubeconfig}: names no cluster server")
    return creds


def _serve(args: argparse.Namespace) -> int:
    from webhook.serve import ServeOptions, serve
    from webhook.settings.index import SettingsIndex
    from webhook.settings.sources import SettingsFile

    if (args.settings_file is None) == (not args.cluster):
        raise SystemExit("serve: give --settings-file FILE or --cluster (not both)")
    if (args.cert_file is None) != (args.key_file is None):
        raise SystemExit("serve: give both --cert-file and --key-file, or neither")
    config = load_config(args.config)
    settings, creds = None, None
    if args.cluster:
        creds = _cluster_credentials(args.kubeconfig)
    else:  # read once, here: the workers inherit the index
        index = SettingsIndex(config.default_namespace, config.login_names)
        settings = SettingsFile(args.settings_file, index)
        settings.load()
    if args.cert_file is None:
        from webhook.tls import ensure_dev_certs  # only here: the server runs without it

        try:
            cert, key, ca = ensure_dev_certs(args.cert_dir)
        except OSError as e:
            raise CliError(
                f"--cert-dir {args.cert_dir}: cannot make a certificate there: {e.strerror or e}"
            ) from None
        print(
            f"TLS: self-signed certificate for localhost, 127.0.0.1; CA in {ca}\n"
            f"Send it the example review:\n  curl --cacert {ca} -H 'Content-Type: application/json'"
            f" --data @examples/admission-review.json https://{args.host}:{args.port}/mutate",
            file=sys.stderr,
        )
    else:
        cert, key = args.cert_file, args.key_file
    serve(
        ServeOptions(
            config=config,
            cert_file=cert,
            key_file=key,
            watch_namespace=args.watch_namespace,
            host=args.host,
            port=args.port,
            workers=args.workers,
            connections=args.connections,
            log_level=args.log_level,
            request_timeout=args.request_timeout,
            keepalive=args.keepalive,
            shutdown_delay=args.shutdown_delay,
            ready_timeout=args.ready_timeout,
            status_namespace=_own_namespace(args.status_namespace) if args.cluster else None,
            webhook_configuration=args.webhook_configuration if args.cluster else "",
        ),
        settings,
        credentials=creds,
    )
    return 0


def _preview(args: argparse.Namespace) -> int:
    from webhook.mutation import decide
    from webhook.settings.index import SettingsIndex
    from webhook.settings.sources import load_file

    config = load_config(args.config)
    index = SettingsIndex(config.default_namespace, config.login_names)
    load_file(args.settings_file, index)
    pod = _read_pod(args.pod)
    namespace = args.namespace or (pod.get("metadata") or {}).get("namespace") or "default"
    decision = decide(pod, namespace, index, config)
    for warning in decision.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if not decision.allowed:
        print(f"Denied: {decision.message}", file=sys.stderr)
        return 1
    if args.patch:
        print(json.dumps(decision.patch, indent=2))
    else:
        yaml.safe_dump(decision.pod or pod, sys.stdout, sort_keys=False)
    return 0


def _read_pod(path: Path) -> dict[str, Any]:
    """One Pod, of the shape the webhook accepts (as the server would answer 400 otherwise)."""
    from webhook.podshape import ShapeError, check

    docs = list(read_file(path))
    if len(docs) != 1 or not isinstance(docs[0][1], dict) or docs[0][1].get("kind", "Pod") != "Pod":
        raise CliError(f"{path}: expected one Pod object")
    pod: dict[str, Any] = docs[0][1]
    try:
        check(pod, path="pod")
    except ShapeError as e:
        raise CliError(f"{path}: {e}") from None
    return pod


def _copy_artifacts(args: argparse.Namespace) -> int:
    from webhook.copier.command import run

    if len(args.more) % 2:
        raise CliError(f"copy-artifacts: {args.more[-1]} has no folder (give URI FOLDER pairs)")
    more = zip(args.more[0::2], map(Path, args.more[1::2]), strict=True)
    pairs = [(args.model_uri, args.dest), *more]
    return run(pairs, args.timeout, args.termination_message_path, args.progress_every)


def _import_primehub(args: argparse.Namespace) -> int:
    from webhook.primehub import PrimeHubError, convert, fetch

    try:
        if args.from_file is not None:
            try:
                answer = json.loads(read_text(args.from_file))
            except FileProblem as e:
                raise CliError(str(e)) from None
            except ValueError as e:
                raise CliError(f"{args.from_file}: not JSON: {e}") from None
        else:
            token = os.environ.get("PRIMEHUB_GRAPHQL_TOKEN", "")
            if args.token_file is not None:
                try:
                    token = read_text(args.token_file).strip()
                except FileProblem as e:
                    raise CliError(f"--token-file {e}") from None
            if not token:
                raise CliError("give --token-file or PRIMEHUB_GRAPHQL_TOKEN (PrimeHub's secret)")
            answer = fetch(args.graphql_url, token)
        imported = convert(answer, args.namespace)
    except PrimeHubError as e:
        raise CliError(str(e)) from None
    for note in imported.notes:
        print(f"import-primehub: {note}", file=sys.stderr)
    if imported.objects:
        yaml.safe_dump_all(imported.objects, sys.stdout, sort_keys=False)
    if imported.failed:  # the others are written: apply them, then see to these
        print(
            f"import-primehub: {len(imported.failed)} group(s) with MLflow not imported: "
            f"{', '.join(imported.failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _own_namespace(given: str | None) -> str:
    """`given`, else the namespace the pod runs in (the ServiceAccount's file), else the
    manifests' own: a release installed elsewhere writes its Lease where its Role allows."""
    if given is not None:
        return given
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip() or "mlflow-webhook"
    except OSError:
        return "mlflow-webhook"


def _check(args: argparse.Namespace) -> int:
    from webhook.doctor import run

    logging.basicConfig(level=logging.ERROR)
    return run(args.model, args.kubeconfig, args.service_account)


def _certs(args: argparse.Namespace) -> int:
    from webhook.certs import CertPolicy, ensure
    from webhook.kube import ConfigError
    from webhook.serve import kube_client

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    policy = CertPolicy(ca_days=args.ca_days, days=args.days)
    try:
        api = kube_client(args.kubeconfig)
    except ConfigError as e:
        raise CliError(str(e)) from None
    print(
        ensure(
            api,
            args.namespace,
            args.secret,
            args.service,
            args.webhook_configuration,
            policy,
            rotate_ca=args.rotate_ca,
            extra_hosts=args.host,
            ca_secret=args.ca_secret,
        )
    )
    return 0


def _ranged(kind: type[float] | type[int], low: float, high: float) -> Any:
    """An argparse type: a number of `kind` in [low, high], else a one-line usage error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlflow-webhook", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the admission webhook (gunicorn, TLS)")
    s.add_argument("--settings-file", type=Path, help="MLflowSetting YAML (no cluster needed)")
    s.add_argument("--cluster", action="store_true", help="watch MLflowSettings in the cluster")
    s.add_argument("--kubeconfig", type=Path, help="with --cluster: kubeconfig (else in-cluster)")
    s.add_argument("--watch-namespace", help="with --cluster: only this namespace")
    s.add_argument(
        "--config", type=Path, help="webhook configuration YAML (see docs/configuration.md)"
    )
    s.add_argument("--cert-file", type=Path)
    s.add_argument("--key-file", type=Path)
    s.add_argument(
        "--cert-dir",
        type=Path,
        default=Path("certs"),
        help="where a self-signed dev certificate is made when none is given",
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_ranged(int, 1, 65535), default=8443)
    s.add_argument("--workers", type=_ranged(int, 1, 64), default=2, help="processes (default 2)")
    s.add_argument(
        "--connections",
        type=_ranged(int, 1, 100_000),
        default=1000,
        help="open connections per worker (default 1000)",
    )
    s.add_argument(
        "--request-timeout",
        type=_ranged(float, 0.1, 300),
        default=10,
        help="seconds a client has for the TLS handshake, and for each request (default 10)",
    )
    s.add_argument(
        "--keepalive",
        type=_ranged(float, 0.1, 3600),
        default=120,
        help="seconds an idle keep-alive connection stays open (default 120)",
    )
    s.add_argument(
        "--shutdown-delay",
        type=_ranged(float, 0, 300),
        default=5,
        help="after SIGTERM: seconds of serving while not ready, before stopping (default 5)",
    )
    s.add_argument(
        "--ready-timeout",
        type=_ranged(float, 0, 300),
        default=10,
        help="with --cluster: seconds a worker waits for its settings before it accepts "
        "connections anyway and answers 503 (default 10)",
    )
    s.add_argument(
        "--status-namespace",
        help="with --cluster: where the Lease of the one process that writes MLflowSetting "
        "status lives (default: the pod's own namespace, else mlflow-webhook); '' turns "
        "status off",
    )
    s.add_argument(
        "--webhook-configuration",
        default="mlflow-webhook",
        help="with --cluster: the MutatingWebhookConfiguration whose matchConditions each worker "
        "brings in line with --config's podKinds and labels when it starts (default "
        "mlflow-webhook); '' leaves it alone",
    )
    s.add_argument(
        "--log-level",
        type=str.lower,
        choices=["debug", "info", "warning", "error", "critical"],
        default="info",
    )
    s.set_defaults(func=_serve)

    v = sub.add_parser("preview", help="print the pod as the webhook would admit it")
    v.add_argument("--settings-file", type=Path, required=True)
    v.add_argument("--config", type=Path)
    v.add_argument("--namespace", help="the pod's namespace (default: its metadata.namespace)")
    v.add_argument("--patch", action="store_true", help="print the JSON patch instead")
    v.add_argument("pod", type=Path)
    v.set_defaults(func=_preview)

    c = sub.add_parser(
        "copy-artifacts",
        help="copy a registered model version (or a logged model) into a folder",
        description="Copies a registered model version (or a logged model) into a folder; more "
        "URI FOLDER pairs copy more models, one after the other (as KServe's storageUris give "
        "them to its storage initializer).",
    )
    c.add_argument(
        "model_uri",
        help="models:/<name>/<version>, models:/<name>@<alias>, models:/<name>/<stage>, "
        "models:/<name>/latest (name may be URL-encoded) or models:/m-<logged model id>",
    )
    c.add_argument("dest", type=Path)
    c.add_argument("more", nargs="*", metavar="URI FOLDER", help="more models and their folders")
    c.add_argument(
        "--timeout",
        type=_ranged(float, 1, 7 * 86400),
        default=600,
        help="give up on transient failures after this many seconds (default 600)",
    )
    c.add_argument(
        "--termination-message-path",
        type=Path,
        help="where the failure sentence goes (default /dev/termination-log, if any)",
    )
    c.add_argument(
        "--progress-every",
        type=_ranged(float, 0.01, 86400),
        default=10,
        help="seconds between progress lines during a copy (default 10)",
    )
    c.set_defaults(func=_copy_artifacts)

    i = sub.add_parser(
        "import-primehub",
        help="write MLflowSettings and Secrets from a PrimeHub installation's group settings",
    )
    source = i.add_mutually_exclusive_group(required=True)
    source.add_argument("--graphql-url", help="PrimeHub's GraphQL endpoint")
    source.add_argument("--from-file", type=Path, help="a saved GraphQL answer (JSON)")
    i.add_argument(
        "--token-file",
        type=Path,
        help="PrimeHub's GraphQL secret (default: $PRIMEHUB_GRAPHQL_TOKEN)",
    )
    i.add_argument("--namespace", default="hub", help="where the objects go (default hub)")
    i.set_defaults(func=_import_primehub)

    d = sub.add_parser(
        "check",
        help="check a group's MLflow setting as its pods use it (run it in a pod of the group)",
    )
    d.add_argument("--model", help="also resolve this models:/ URI and list its artifacts")
    d.add_argument(
        "--kubeconfig",
        type=Path,
        help="where the API server is, for the Kubernetes-identity check outside a pod "
        "(in a pod: its own)",
    )
    d.add_argument(
        "--service-account",
        metavar="NAMESPACE/NAME",
        help="with MLFLOW_TRACKING_AUTH=kubernetes*: check as this ServiceAccount's pods log in, "
        "with a token from the TokenRequest API",
    )
    d.set_defaults(func=_check)

    k = sub.add_parser("certs", help="keep the webhook's certificates (self-managed install)")
    ksub = k.add_subparsers(dest="action", required=True)
    e = ksub.add_parser("ensure", help="create or renew the CA and serving certificate")
    e.add_argument("--namespace", default="mlflow-webhook")
    e.add_argument(
        "--secret", default="mlflow-webhook-tls", help="serving pair and CA bundle (mounted)"
    )
    e.add_argument(
        "--ca-secret", default="mlflow-webhook-ca", help="the CA and its key (the keeper's only)"
    )
    e.add_argument("--service", default="mlflow-webhook")
    e.add_argument("--webhook-configuration", default="mlflow-webhook")
    e.add_argument("--kubeconfig", type=Path, help="default: in-cluster")
    e.add_argument("--days", type=float, default=90, help="serving certificate lifetime")
    e.add_argument("--ca-days", type=float, default=730, help="CA lifetime")
    e.add_argument(
        "--host",
        action="append",
        help="another DNS name or IP address for the serving certificate (repeatable)",
    )
    e.add_argument(
        "--rotate-ca",
        action="store_true",
        help="replace the CA now (keeps the old one in the bundle)",
    )
    e.set_defaults(func=_certs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, SourceError, CliError) as e:
        print(f"mlflow-webhook: {e}", file=sys.stderr)
        return 2
    except ApiError as e:  # the certificate keeper's calls: refused, or no answer
        print(f"mlflow-webhook: {brief(e)}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
