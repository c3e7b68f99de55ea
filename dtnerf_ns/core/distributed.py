"""Training in several CPU processes through nerfstudio's own trainer and DDP (gloo).

On GPUs, ``ns-train ... --machine.num-devices N`` does this. nerfstudio 1.1.5's launcher asserts that CUDA is present
(``_distributed_worker``), so on a CPU-only machine (tests, CI) this module starts the processes instead: the same
process group set-up, then nerfstudio's ``train_loop`` in each, with :class:`TalkingHeadPipeline` wrapping the model
in DDP (gradients averaged over gloo, rank 0 writing checkpoints).
"""

from __future__ import annotations

import socket

import torch.distributed as dist
import torch.multiprocessing as mp
from nerfstudio.engine.trainer import TrainerConfig


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world_size: int, url: str, config: TrainerConfig) -> None:
    from nerfstudio.scripts.train import train_loop  # noqa: PLC0415
    from nerfstudio.utils import comms  # noqa: PLC0415

    dist.init_process_group(backend="gloo", init_method=url, world_size=world_size, rank=rank)
    comms.LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    try:
        train_loop(rank, world_size, config, global_rank=rank)
        comms.synchronize()
    finally:
        dist.destroy_process_group()


def train_on_cpu_processes(config: TrainerConfig, num_processes: int) -> None:
    """Trains ``config`` (device type cpu) in ``num_processes`` processes on this machine (loopback only)."""
    if config.machine.device_type != "cpu":
        raise ValueError("train_on_cpu_processes is for CPU training; on GPUs use ns-train --machine.num-devices N")
    config.machine.num_devices = num_processes
    url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(_worker, args=(num_processes, url, config), nprocs=num_processes, join=True)
