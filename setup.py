from setuptools import find_packages, setup

setup(
    name="tbfast",
    version="0.1.0",
    description="Semi-supervised video action recognition with TimeBalance, built for throughput (DALI, AMP, channels-last)",
    python_requires=">=3.10",
    packages=find_packages(include=["tbfast", "tbfast.*", "dali_pipelines", "dali_pipelines.*"])
    + ["tbfast_benchmarks"],
    package_dir={"tbfast_benchmarks": "benchmarks"},
    package_data={"tbfast": ["configs/*.yaml"], "tbfast_benchmarks": ["*.sh"]},
    install_requires=[
        "torch>=2.10",
        "torchvision",
        "nvidia-dali-cuda130",
        "pytorchvideo==0.1.5",
        "av>=17",  # VideoReformatter.reformat(threads=...): the host path and prep convert on the calling thread
        "numpy",
        "numba",
        "rich",
        "pyyaml",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest", "ruff==0.17.6", "mypy==2.4.1"],
        # `tbfast bench loader` peers (torchcodec also needs FFmpeg's shared libraries)
        "peers": ["torchcodec", "decord"],
        # TensorBoard event files in every run directory (RUN/tensorboard/)
        "tensorboard": ["tensorboard"],
    },
    entry_points={"console_scripts": ["tbfast=tbfast.cli:main"]},
)
