# wordup-bot: the chat adapters. A small runtime image (Debian slim + CA
# roots + one static-ish binary); build from the repository root:
#   docker build -f deploy/bot.Dockerfile -t wordup-bot .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p wordup-bot --bin wordup-bot \
    && strip target/release/wordup-bot

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 wordup
COPY --from=build /src/target/release/wordup-bot /usr/local/bin/wordup-bot
USER 10001
ENV WORDUP_BIND=0.0.0.0:8080 WORDUP_METRICS_BIND=0.0.0.0:9090 WORDUP_LOG_FORMAT=json
EXPOSE 8080 9090
ENTRYPOINT ["wordup-bot"]
CMD ["serve"]
