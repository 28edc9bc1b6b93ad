"""Training across processes: `hark-train train` under `torchrun` (DistributedDataParallel).

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them everything here is a no-op and
the run is the single process it always was. NCCL on CUDA, gloo on CPU. Rank 0 fills the
feature cache, writes checkpoints and logs, and prints; every rank trains on its own shard.
"""

import os

import torch
import torch.distributed as dist


class Processes:
    """This process's place in the run: rank, world size, device, and the collective steps
    the trainer needs (all of them cheap no-ops in a single process)."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = self.world > 1
        self.device = None
        if not self.active:
            return
        cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        elif device not in ("auto", "cpu"):
            raise ValueError(f"distributed training runs on CUDA (NCCL) or CPU (gloo), "
                             f"not on {device}")
        else:
            self.device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        """Each value summed over all processes."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, the same in every process (clock-based stops differ by rank)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.broadcast(t, 0)
        return bool(t.item())

    def shard(self, n: int) -> list[int]:
        """This process's share of n items (every n-th, starting at the rank)."""
        return list(range(self.rank, n, self.world))

    def wrap(self, module: torch.nn.Module, unused_parameters: bool) -> torch.nn.Module:
        """DDP around `module` when distributed; `unused_parameters` when some trainable
        parameters get no gradient (a tag head without a tag loss), which DDP must look for
        at every step."""
        if not self.active:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(
            module, device_ids=ids, find_unused_parameters=unused_parameters)

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
