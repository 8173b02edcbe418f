# dsmopt — multi-stage build: a Swift builder with the -dev packages, a slim Debian runtime.
#   docker build -t dsmopt .
#   docker run -d -p 8080:8080 -v dsmopt-data:/data dsmopt                 # the job service
#   (behind a reverse proxy under a path prefix: -e DSMOPT_PUBLIC_URL=https://host/prefix; README, "The job service")
#   docker run --rm -v dsmopt-data:/data dsmopt admin --data /data create-user alice --role researcher
#   docker run --rm -v "$PWD:/work" dsmopt run /work/img_01.tif /work/img_02.tif --out /work/out
FROM swift:6.1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libgdal-dev libopenblas-dev liblapacke-dev libsqlite3-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# A portable binary: the image may run on another CPU than the one that built it.
ENV DSMOPT_TARGET_CPU=x86-64
COPY . .
RUN swift build -c release --product dsmopt --static-swift-stdlib \
 && install -D .build/release/dsmopt /out/dsmopt

FROM debian:bookworm-slim
# The source commit, recorded in every manifest's provenance: docker build --build-arg DSMOPT_COMMIT=$(git rev-parse HEAD) .
ARG DSMOPT_COMMIT=""
ENV DSMOPT_COMMIT=$DSMOPT_COMMIT
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgdal32 libopenblas0-pthread liblapacke libsqlite3-0 libxml2 libcurl4 ca-certificates proj-data libjs-leaflet \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/dsmopt /usr/local/bin/dsmopt
COPY Presets /usr/share/dsmopt/presets
COPY Fixtures /usr/share/dsmopt/fixtures
# The web portal's files (Leaflet comes from Debian's libjs-leaflet, /usr/share/javascript/leaflet).
COPY Sources/JobService/Portal/web /usr/share/dsmopt/portal
ENV DSMOPT_PRESETS=/usr/share/dsmopt/presets
# The service runs as an unprivileged user that owns only its data folder.
RUN groupadd --system --gid 10001 dsmopt \
 && useradd --system --uid 10001 --gid dsmopt --home-dir /data --shell /usr/sbin/nologin dsmopt \
 && install -d -o dsmopt -g dsmopt -m 0750 /data
USER dsmopt:dsmopt
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["dsmopt"]
CMD ["serve", "--data", "/data", "--host", "0.0.0.0", "--port", "8080"]
