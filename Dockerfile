# One image for both roles: the webhook (`serve`) and the model init container
# (`copy-artifacts`, which needs mlflow-skinny and boto3, both dependencies of the package).
#
# A normal engine: `docker build .` (the slim Python image; wheels built inside).
# Without network inside the build (as tests/image/build.sh builds it with buildah): wheels made
# beforehand in ./wheels and any base with python3 and venv:
#   buildah bud --build-arg BASE=localhost/debian-python --build-arg WHEELS=given .
ARG BASE=python:3.11-slim
ARG WHEELS=built

FROM ${BASE} AS built
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN python3 -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM scratch AS given
COPY wheels/ /wheels/

FROM ${WHEELS} AS wheels

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python3 -m venv /opt/venv && \
    /opt/venv/bin/pip install --no-index --find-links=/wheels primehub-mlflow-webhook
# Numeric, so runAsNonRoot can verify it. Nothing is written outside /tmp (an emptyDir in the
# manifests), so the root filesystem can be read-only.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["mlflow-webhook"]
CMD ["serve", "--cluster", "--host=0.0.0.0", "--cert-dir=/tmp/certs"]
