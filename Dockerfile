# One image for both programs: `sidekey injector` (the webhook) and
# `sidekey agent` (the in-pod sidecar). Build stage compiles TypeScript; the
# runtime stage has production dependencies and dist/ only, runs as 65532.
FROM node:20-alpine AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY agent ./agent
COPY injector ./injector
COPY proto ./proto
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --ignore-scripts \
 && rm -rf dist/test dist/bench dist/scripts \
 && find dist -name '*.map' -delete

FROM node:20-alpine
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
