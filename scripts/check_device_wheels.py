"""Check a folder of device wheels: one version per package, and every requirement
(for Python 3.12 on Linux x86-64, no extras) either carried or on the GPU machine.

    python scripts/check_device_wheels.py device-wheels

The machine's packages are those of .library/device/KINDS.md ("Python packages already
there"), copied below. Prints the total size and exits 1 on a gap.
"""

import re
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ON_MACHINE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax
e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning
lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions
nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest python-dateutil pytorch-lightning pyyaml regex requests rich safetensors scikit-image
scikit-learn scipy seaborn sentencepiece setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorstore threadpoolctl tifffile tiktoken timm tokenizers
toolz torch torchaudio torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"""

#: Requirements the kit never imports (abTEM reads and writes zarr files only when asked;
#: IPython needs jedi only for completion; widgetsnbextension is a notebook front end).
#: tests/test_device_kit.py runs the kit with these blocked, so this stays true.
NOT_NEEDED = ("zarr", "numcodecs", "donfig", "google-crc32c", "jedi", "parso",
              "widgetsnbextension")

ENVIRONMENT = {"python_version": "3.12", "python_full_version": "3.12.3",
               "sys_platform": "linux", "platform_system": "Linux",
               "platform_machine": "x86_64", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython",
               "extra": ""}


def main(folder: str) -> int:
    wheels = sorted(Path(folder).glob("*.whl"))
    carried: dict[str, str] = {}
    for wheel in wheels:
        name = canonicalize_name(re.split(r"-\d", wheel.name, maxsplit=1)[0])
        if name in carried:
            print(f"two versions of {name}: {carried[name]} and {wheel.name}")
            return 1
        carried[name] = wheel.name
    there = {canonicalize_name(n) for n in ON_MACHINE.split() + list(NOT_NEEDED)}
    gaps = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            text = archive.read(meta).decode("utf-8", "replace")
        for line in text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker and not requirement.marker.evaluate(ENVIRONMENT):
                continue
            name = canonicalize_name(requirement.name)
            if name not in carried and name not in there:
                gaps.append(f"{wheel.name} needs {requirement}")
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {folder}")
    for gap in gaps:
        print("missing:", gap)
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "device-wheels"))
