# AetherScan server image. The install steps are the README's (make install): torch pinned to a
# CPU build first, then the package, then three.js from npm.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends make nodejs npm libgl1 libglib2.0-0 libgomp1 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml Makefile README.md ./
COPY src ./src
COPY web ./web
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN python -m venv /app/.venv \
    && /app/.venv/bin/pip install --no-cache-dir --index-url ${TORCH_INDEX} torch==2.13.0 \
    && /app/.venv/bin/pip install --no-cache-dir -e '.[heic]' \
    && cd web && npm install --no-audit --no-fund --omit=dev

ENV AETHERSCAN_HOST=0.0.0.0 \
    AETHERSCAN_PORT=8000 \
    AETHERSCAN_DATA_DIR=/data \
    HF_HOME=/hf-cache
VOLUME ["/data", "/hf-cache"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD curl -fsS http://127.0.0.1:8000/api/health || exit 1
CMD ["/app/.venv/bin/aetherscan", "serve"]
