# Multi-stage build: wheels in a builder, a slim non-root runtime running `miaoxiang serve`.
# Not built on this project's CI machines (they have no Docker engine): see docs/deploy.md.
FROM python:3.11-slim AS build
# python-qpid-proton (the AMQP 1.0 client of the platform subscriptions) has no wheel: it compiles
# against OpenSSL. The runtime image keeps only the built wheel (libssl is in the slim image).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY simulators ./simulators
# src/miaoxiang/migrations links here: the SQL travels inside the wheel, where the default migrations_dir finds it.
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app miaoxiang \
    && mkdir -p /app/data && chown miaoxiang /app/data
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV MIAOXIANG_HTTP_HOST=0.0.0.0 \
    MIAOXIANG_DATA_DIR=/app/data
USER miaoxiang
EXPOSE 8080 9026
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["miaoxiang"]
CMD ["serve"]
