# image-learner: a build stage compiles the binary against libtorch (the PyPI torch 2.13.0 wheel),
# and a runtime stage carries the binary with only the libraries it loads, run as a non-root user.
# Build: scripts/docker-build.sh (it makes the base image where no registry is reachable).
#   docker build -t image-learner:0.1.0 [--build-arg WEIGHTS="caformer_s18_384 resnet18"] .
# Optional build context folders: certs/ (extra CA certificates, for a TLS-intercepting proxy) and
# apt/ (a debian.sources to use instead of the image's own); both may be empty.

FROM debian:bookworm-slim AS build
COPY docker/certs/ /usr/local/share/ca-certificates/
COPY docker/apt/ /tmp/apt/
RUN if [ -f /tmp/apt/debian.sources ]; then cp /tmp/apt/debian.sources /etc/apt/sources.list.d/debian.sources; fi \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates rustc-web cargo-web gcc g++ libc6-dev python3 python3-venv pkg-config \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# libtorch from the torch wheel, installed whole (about 4 GB with its CUDA packages) because the
# link resolves libtorch_cuda's dependencies; the runtime stage keeps only what the binary loads.
RUN python3 -m venv /opt/torch \
 && /opt/torch/bin/pip install --quiet torch==2.13.0
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY csrc/ csrc/
COPY src/ src/
COPY templates/ templates/
ENV LIBTORCH_USE_PYTORCH=1 IMAGE_LEARNER_PYTHON=/opt/torch/bin/python PATH=/opt/torch/bin:$PATH
RUN cargo build --release --locked \
 && cp target/release/image-learner /usr/local/bin/image-learner \
 && strip /usr/local/bin/image-learner
# Exactly the shared libraries the binary loads from the torch install, at their own paths (the
# binary's rpath points there): libtorch_cpu, libc10, libgomp and the CUDA runtime and CUPTI that
# libtorch_cpu needs. A GPU image would copy the whole torch/lib and nvidia folders instead.
RUN mkdir /runtime \
 && ldd /usr/local/bin/image-learner | awk '/=> \/opt\/torch/ {print $3}' | xargs -I{} cp --parents -L {} /runtime/ \
 && /usr/local/bin/image-learner --version

FROM debian:bookworm-slim
COPY --from=build /runtime/ /
COPY --from=build /usr/local/bin/image-learner /usr/local/bin/image-learner
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN useradd --create-home --uid 1000 learner && mkdir -p /opt/weights && chown learner /opt/weights
ENV IMAGE_LEARNER_WEIGHTS=/opt/weights
USER learner
ARG WEIGHTS=""
RUN for m in $WEIGHTS; do image-learner weights fetch "$m" || exit 1; done; image-learner --version
WORKDIR /home/learner
ENTRYPOINT []
CMD ["image-learner", "--help"]
