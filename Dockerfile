# One image for both roles: the webhook (`serve`) and the model init container
# (`copy-artifacts`, which needs mlflow-skinny and boto3, both dependencies of the package).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels primehub-mlflow-webhook
# Numeric, so runAsNonRoot can verify it. Nothing is written outside /tmp (an emptyDir in the
# manifests), so the root filesystem can be read-only.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["mlflow-webhook"]
CMD ["serve", "--cluster", "--host=0.0.0.0", "--cert-dir=/tmp/certs"]
