"""Build gi_sdk: the runtime (sdk/), export/ and train/ subpackages, and the pybind11 extension.

The source tree keeps the product's top-level layout (sdk/, export/, train/, cpp_ext/), and
this file maps it onto one importable package:

    gi_sdk          <- sdk/
    gi_sdk.export   <- export/
    gi_sdk.train    <- train/
    gi_sdk._native  <- cpp_ext/*.cpp (pybind11)
"""
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

RUNTIME = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "tokenizers>=0.19",
    "pyyaml>=6",
    "onnxruntime>=1.18",  # runs model bundles (the "onnxruntime" backend)
    "onnx>=1.16",  # lifts the decoder's later-step branch into its own graph (gi_sdk.backends.decoder_steps)
]
TORCH = "torch>=2.4"  # the Makefile installs the CPU build torch==2.13.0 before this is resolved
EXTRAS = {
    "torch": [TORCH, "transformers>=4.57", "safetensors>=0.4", "pillow>=10",
              "llguidance>=1.0"],  # JSON-constrained decoding of the decoder-only VLM families
    "train": [TORCH, "transformers>=4.57", "safetensors>=0.4", "pillow>=10", "peft>=0.13", "accelerate>=1.0",
              "llguidance>=1.0",  # evaluating decoder-only VLMs runs them through the Session
              # evaluation (gi_sdk.train.metrics): maintained metric implementations
              "sacrebleu>=2.4", "rouge-score>=0.1.2", "nltk>=3.9", "pycocotools>=2.0.8", "scipy>=1.11"],
    "export": [TORCH, "transformers>=4.57", "safetensors>=0.4", "onnx>=1.16", "onnxruntime>=1.18"],
    "onnxruntime": ["onnxruntime>=1.18", "onnx>=1.16"],
    "gpu": ["onnxruntime-gpu>=1.18", "tensorrt>=10"],
    "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3",
            "atheris>=2.3; platform_system == 'Linux' and platform_machine == 'x86_64'", "matplotlib>=3.8"],
    "bench": ["matplotlib>=3.8"],   # the PNG chart of benchmarks/latency.py
}

native = Pybind11Extension(
    "gi_sdk._native",
    sources=[f"cpp_ext/{name}.cpp" for name in (
        "bindings", "location", "resize", "resample_avx2", "fov", "geometry", "token_decoder", "id_decoder")],
    include_dirs=["cpp_ext"],
    depends=[f"cpp_ext/{name}.h" for name in (
        "checks", "location", "resize", "resample_task", "resample_kernel", "fov", "geometry", "token_decoder")],
    cxx_std=17,
    # no implicit FMA contraction: the kernels fuse only where their numpy twins can do the same,
    # so both give bit-identical results
    extra_compile_args=["/O2", "/fp:precise"] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"],
)

setup(
    name="gi-sdk",
    version="0.1.0",
    description="Edge inference SDK: ask a vision-language model about live endoscopy video",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={
        "gi_sdk": "sdk",
        "gi_sdk.export": "export",
        "gi_sdk.train": "train",
    },
    packages=[
        "gi_sdk",
        "gi_sdk.backends",
        "gi_sdk.synthetic",
        "gi_sdk.export",
        "gi_sdk.train",
    ],
    # the built-in model ships inside the package (gi_sdk/models/synthetic-demo, ~17 MB)
    package_data={"gi_sdk": ["_native.pyi", "py.typed", "models/synthetic-demo/*"],
                  "gi_sdk.train": ["recipes/*.yaml"]},
    ext_modules=[native],
    cmdclass={"build_ext": build_ext},
    install_requires=RUNTIME,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["gi-sdk = gi_sdk.cli:main"]},
)
