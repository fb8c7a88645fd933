# lookalike API. Build: docker build -t lookalike .   Run: docker run -p 8000:8000 lookalike
# (embedded Redis in the container, data in the /data volume), or pass -e REDIS_URL=...
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schema schema
COPY resolvers resolvers
COPY services services
COPY data data
RUN python -m venv /opt/lookalike \
 && /opt/lookalike/bin/pip install --no-cache-dir torch==2.13.0 .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 lookalike \
 && mkdir /data && chown lookalike /data
COPY --from=build /opt/lookalike /opt/lookalike
USER lookalike
ENV PATH=/opt/lookalike/bin:$PATH \
    LOOKALIKE_HOST=0.0.0.0 \
    LOOKALIKE_DATA_DIR=/data \
    HF_HUB_OFFLINE=1
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
CMD ["lookalike", "serve"]
