"""The kernel sources that passed the GPU check: written by `scripts/gpu_check.sh` when it passes on a CUDA machine,
committed with its results. saw_verl.kernel_check compares it with the installed kernels; None: no pass recorded."""

VERIFIED_KERNELS = None
