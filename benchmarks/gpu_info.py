"""The line printed beside every GPU figure: GPU name, driver, torch, CUDA and cuDNN versions."""

from __future__ import annotations

import subprocess


def device_label(device: str = "cuda") -> str:
    """``"cpu"`` for a CPU device; for CUDA the GPU's name, driver (nvidia-smi) and the library versions."""
    import torch

    if torch.device(device).type != "cuda":
        return f"cpu, torch {torch.__version__}"
    driver = "?"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
        driver = out.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return (f"GPU {torch.cuda.get_device_name(torch.device(device))}, driver {driver}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
