# syntax=docker/dockerfile:1
# rnnserve image: the serving dependencies only (no torch), the bundled models/, a non-root user.
#
#   docker build -t rnnserve:cpu .                 # default target: CPU (python slim)
#   docker build -t rnnserve:gpu --target gpu .    # CUDA runtime + onnxruntime-gpu (extra `gpu`)
#
# Configured like everywhere else, by RNNSERVE_* environment variables (service/config.py);
# the command is the README's serve command, `python -m service`.

ARG PYTHON_IMAGE=python:3.11-slim
# onnxruntime-gpu 1.31 is built for CUDA 13 and cuDNN 9: change the two together.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ARG ONNXRUNTIME_GPU_VERSION=1.31.1

# ---------------------------------------------------------------- CPU: build the virtual environment
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# The project itself, without extras: fastapi, uvicorn, onnxruntime, numpy, ... and never torch.
RUN pip install --no-cache-dir .

# ---------------------------------------------------------------- GPU: build the virtual environment
FROM ${CUDA_IMAGE} AS gpu-builder
ARG ONNXRUNTIME_GPU_VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
ARG DEBIAN_FRONTEND=noninteractive
# python3 comes from the base image's Ubuntu release, which the CUDA tag already pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: keep only the GPU build.
RUN pip install --no-cache-dir "/src[gpu]" "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
    && pip uninstall -y onnxruntime \
    && pip install --no-cache-dir --force-reinstall --no-deps "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"

# ---------------------------------------------------------------- GPU runtime (--target gpu)
FROM ${CUDA_IMAGE} AS gpu
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rnnserve \
    && useradd --system --uid 10001 --gid rnnserve --home-dir /app --shell /usr/sbin/nologin rnnserve
COPY --from=gpu-builder /opt/venv /opt/venv
WORKDIR /app
# Read-only for the service user: root owns the models and the probe.
COPY models ./models
COPY deploy/healthcheck.py ./deploy/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RNNSERVE_MODEL_REPOSITORY=/app/models \
    RNNSERVE_HOST=0.0.0.0 \
    RNNSERVE_PORT=8000 \
    RNNSERVE_DEVICE=cuda \
    RNNSERVE_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
CMD ["python", "-m", "service"]

# ---------------------------------------------------------------- CPU runtime (default target)
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 rnnserve \
    && useradd --system --uid 10001 --gid rnnserve --home-dir /app --shell /usr/sbin/nologin rnnserve
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Read-only for the service user: root owns the models and the probe.
COPY models ./models
COPY deploy/healthcheck.py ./deploy/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RNNSERVE_MODEL_REPOSITORY=/app/models \
    RNNSERVE_HOST=0.0.0.0 \
    RNNSERVE_PORT=8000 \
    RNNSERVE_DEVICE=cpu \
    RNNSERVE_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
CMD ["python", "-m", "service"]
