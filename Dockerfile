# syntax=docker/dockerfile:1
# cnnrelax service image: the API (`cnnrelax serve`) and, with another entry point, Dask scheduler and workers.
#
# Build:  docker build -t cnnrelax:0.1.0 .
# Run:    docker run -d --restart unless-stopped -p 127.0.0.1:8000:8000 -v cnnrelax-data:/data \
#             -e CNNRELAX_API_KEYS="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" cnnrelax:0.1.0
# The restart policy starts a process that died again; the HEALTHCHECK below marks one that stopped answering
# unhealthy (an orchestrator, or an autoheal container, replaces it). See docs/operations-faults.md, and
# compose.yaml for the API + Dask scheduler + 2 workers (keys on, scheduler and dashboard not published).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build stage: a virtual environment with the pinned dependencies and the project ------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, from the lock alone, so this layer is cached across source changes.
COPY requirements.lock ./
RUN pip install --requirement requirements.lock
COPY pyproject.toml README.md VERSION ./
COPY service ./service
COPY clients/python ./clients/python
RUN pip install --no-deps ./ ./clients/python \
    && pip check

# ---- runtime stage: the venv only, a non-root user, the data volume ------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cnnrelax" \
      org.opencontainers.image.description="Convex relaxations of one-hidden-layer CNNs, as a durable job service" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 cnnrelax \
    && useradd --system --uid 10001 --gid cnnrelax --home-dir /home/cnnrelax --create-home cnnrelax \
    && mkdir -p /data \
    && chown cnnrelax:cnnrelax /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONFAULTHANDLER=1 \
    CNNRELAX_DATA_DIR=/data
USER 10001:10001
WORKDIR /home/cnnrelax
VOLUME ["/data"]
EXPOSE 8000
# No curl in the slim image: the check is the standard library. CNNRELAX_HEALTHCHECK_URL overrides the URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('CNNRELAX_HEALTHCHECK_URL', 'http://127.0.0.1:8000/healthz'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["cnnrelax", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8000", "--data-dir", "/data"]
