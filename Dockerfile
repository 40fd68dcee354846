# Builds dsconv_ext with its CUDA kernels against the pinned torch and checks that it imports.
#   docker build -t dsconv_ext .
#   docker run --gpus all dsconv_ext python -m bench --quick
FROM nvidia/cuda:13.0.0-devel-ubuntu24.04

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CUDA_HOME=/usr/local/cuda \
    DSCONV_CUDA=1 \
    TORCH_CUDA_ARCH_LIST="8.0;9.0"

WORKDIR /src
COPY requirements.txt requirements-test.txt ./
RUN python3 -m venv /opt/venv && pip install --no-cache-dir -r requirements-test.txt

COPY . .
RUN pip install --no-cache-dir --no-build-isolation . \
 && cd / && python -c "import dsconv_ext, torch; print('dsconv_ext', dsconv_ext.__version__, 'torch', torch.__version__)"
