# syntax=docker/dockerfile:1
# antrax-pipe with CUDA-enabled TensorFlow, built from this repository's own files (docs/containers.md).
#   docker build -t ghcr.io/antrax-pipe/antrax-pipe:0.1.0 .    # tag: the name the workflow's `container:` uses
#   docker run --rm --gpus all -v "$PWD:$PWD" -w "$PWD" ghcr.io/antrax-pipe/antrax-pipe:0.1.0 classify EXPDIR
# The CUDA base image carries NVIDIA's container settings (NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES);
# TensorFlow's CUDA and cuDNN libraries come from the `gpu` extra (nvidia-* wheels, CUDA 12.9 for TensorFlow 2.21),
# so the host needs only an NVIDIA driver for CUDA 12. Without a GPU the image runs on CPU.
# Python 3.11 (Ubuntu 22.04's python3.11 package): the version the lock file was tested with.
ARG BASE_IMAGE=nvidia/cuda:12.9.1-base-ubuntu22.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/antrax-pipe \
    PATH=/opt/antrax-pipe/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/antrax-pipe

# Only what the package is built from (the build context is cut down further by .dockerignore).
WORKDIR /tmp/antrax-pipe
COPY pyproject.toml setup.py README.md LICENSE requirements-lock.txt ./
COPY antrax_pipe ./antrax_pipe
COPY workflow ./workflow
# The tested versions (requirements-lock.txt) as constraints; TensorFlow pins its nvidia-* wheels itself.
# A regular (not editable) install: the workflow travels inside the package (antrax_pipe/workflow/), so the build
# folder is not needed afterwards.
# hadolint ignore=DL3013
RUN pip install --upgrade pip \
    && pip install -c requirements-lock.txt ".[gpu]" \
    && rm -rf /tmp/antrax-pipe \
    && antrax-pipe --version

WORKDIR /work
ENTRYPOINT ["antrax-pipe"]
CMD ["--help"]
